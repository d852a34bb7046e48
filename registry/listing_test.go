package registry

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// recount computes the listing aggregates the slow way, from the
// catalog's public API: every live claim the policy lists under its
// dataset's name, not restricted; and live records per origin.
func recount(c *Catalog) (names []string, orgs []OrgListing, live map[nii.NodeID]int) {
	var entries []Entry
	c.EachLive(func(e Entry) { entries = append(entries, e) })
	byOrg := map[string]*OrgListing{}
	for _, e := range entries {
		a := e.Advert
		if !c.Listed(e) || a.Meta.Access == nii.AccessRestricted {
			continue
		}
		names = append(names, ListName(a.Dataset))
		o := byOrg[a.Dataset.Org]
		if o == nil {
			o = &OrgListing{Org: a.Dataset.Org}
			byOrg[a.Dataset.Org] = o
		}
		o.Datasets++
		if t := a.Meta.Issued; !t.IsZero() && (o.Issued.IsZero() || t.Before(o.Issued)) {
			o.Issued = t
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if names == nil {
		names = []string{}
	}
	orgs = []OrgListing{}
	for _, o := range byOrg {
		orgs = append(orgs, *o)
	}
	slices.SortFunc(orgs, func(a, b OrgListing) int { return strings.Compare(a.Org, b.Org) })
	live = map[nii.NodeID]int{}
	c.mu.RLock()
	for _, byOrigin := range c.entries {
		for origin, e := range byOrigin {
			if !e.Advert.Withdrawn {
				live[origin]++
			}
		}
	}
	c.mu.RUnlock()
	return names, orgs, live
}

// TestListingMatchesRecount drives a catalog through random adds,
// replacements (new versions, a change of access), withdrawals, replica
// adverts, rival claims, credentials gained and lost (Reverify), the
// policy's mode switched, expiries and a reopen, and after every step
// checks the incrementally kept aggregates against a full recount.
func TestListingMatchesRecount(t *testing.T) {
	trusted := map[nii.NodeID]string{} // node → the org its credential proves, while trusted
	verify := func(cred string, node nii.NodeID) (string, error) {
		if org, ok := trusted[node]; ok && cred == "cred:"+org {
			return org, nil
		}
		return "", errors.New("not trusted")
	}
	db := memDB(t)
	self := newIdent()
	c, err := OpenCatalog(db, self.ID, self.Key, verify)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(13, 1))
	idents := []ident{newIdent(), newIdent(), newIdent(), newIdent(), newIdent()}
	orgOf := []string{"greenwich", "lambeth", "greenwich", "camden", "lambeth"} // two claim greenwich, two lambeth
	seq := map[nii.NodeID]uint64{}
	version := map[string]uint64{}
	day := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

	check := func(step string) {
		t.Helper()
		wantNames, wantOrgs, wantLive := recount(c)
		gotNames, total := c.ListedNames(0, -1)
		if !slices.Equal(gotNames, wantNames) || total != len(wantNames) {
			t.Fatalf("%s: ListedNames = %v (total %d), recount %v", step, gotNames, total, wantNames)
		}
		gotOrgs := c.ListedOrgs()
		if !slices.EqualFunc(gotOrgs, wantOrgs, func(a, b OrgListing) bool {
			return a.Org == b.Org && a.Datasets == b.Datasets && a.Issued.Equal(b.Issued)
		}) {
			t.Fatalf("%s: ListedOrgs = %+v, recount %+v", step, gotOrgs, wantOrgs)
		}
		for _, o := range wantOrgs {
			if got, ok := c.ListedOrg(o.Org); !ok || got.Datasets != o.Datasets || !got.Issued.Equal(o.Issued) {
				t.Fatalf("%s: ListedOrg(%s) = %+v %v, recount %+v", step, o.Org, got, ok, o)
			}
		}
		if got := c.CountByOrigin(); !maps.Equal(got, wantLive) {
			t.Fatalf("%s: CountByOrigin = %v, recount %v", step, got, wantLive)
		}
		// Paging agrees with the whole list.
		if len(wantNames) > 2 {
			page, _ := c.ListedNames(1, 2)
			if !slices.Equal(page, wantNames[1:3]) {
				t.Fatalf("%s: ListedNames(1, 2) = %v, want %v", step, page, wantNames[1:3])
			}
		}
	}

	apply := func(k int, name string, withdrawn, replica bool) string {
		g := idents[k]
		org := orgOf[k]
		seq[g.ID]++
		key := fmt.Sprintf("%d/%s", k, name)
		version[key]++
		access := nii.AccessOpen
		if r.IntN(4) == 0 {
			access = nii.AccessRestricted
		}
		cred := ""
		if r.IntN(3) > 0 {
			cred = "cred:" + org
		}
		issued := day.Add(time.Duration(r.IntN(1000)) * time.Hour)
		if r.IntN(5) == 0 {
			issued = time.Time{}
		}
		a := &nii.Advert{Origin: g.ID, Seq: seq[g.ID], Dataset: nii.DatasetID{Org: org, Name: name}, Version: version[key],
			Manifest: nii.HashOf([]byte(key + fmt.Sprint(version[key]))), Signed: day, Replica: replica && !withdrawn, Withdrawn: withdrawn,
			Credential: cred,
			Meta:       nii.Metadata{Title: name, Publisher: org, Access: access, Issued: issued, Modified: issued}}
		if withdrawn {
			a.Manifest, a.Meta = nii.Hash{}, nii.Metadata{}
		}
		sa, err := nii.SignAdvert(a, g.Key)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Apply(sa); err != nil && !errors.Is(err, ErrRejected) {
			t.Fatal(err)
		}
		return fmt.Sprintf("apply %s withdrawn=%v replica=%v access=%s cred=%q", key, withdrawn, replica, access, cred)
	}

	names := []string{"spend", "trees", "parks", "bins", "roads", "a-b", "a"}
	check("empty")
	for step := 0; step < 600; step++ {
		var what string
		switch x := r.IntN(100); {
		case x < 60:
			what = apply(r.IntN(len(idents)), names[r.IntN(len(names))], false, r.IntN(8) == 0)
		case x < 75:
			what = apply(r.IntN(len(idents)), names[r.IntN(len(names))], true, false)
		case x < 85:
			k := r.IntN(len(idents))
			if _, ok := trusted[idents[k].ID]; ok {
				delete(trusted, idents[k].ID)
			} else {
				trusted[idents[k].ID] = orgOf[k]
			}
			c.Reverify()
			what = fmt.Sprintf("trust of %d toggled, reverified", k)
		case x < 90:
			on := !c.RequireVerified()
			c.SetRequireVerified(on)
			what = fmt.Sprintf("require verified %v", on)
		case x < 95:
			k := r.IntN(len(idents))
			if _, err := c.Expire(idents[k].ID); err != nil {
				t.Fatal(err)
			}
			// Expired: it comes back only with a fresh identity.
			idents[k] = newIdent()
			what = fmt.Sprintf("expired %d", k)
		default:
			mode := c.RequireVerified()
			c, err = OpenCatalog(db, self.ID, self.Key, verify)
			if err != nil {
				t.Fatal(err)
			}
			c.SetRequireVerified(mode)
			what = "reopened"
		}
		check(fmt.Sprintf("step %d (%s)", step, what))
	}
	names2, _ := c.ListedNames(0, -1)
	if len(names2) == 0 {
		t.Error("the run ended with nothing listed: the test exercised too little")
	}
}
