package registry

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/search"
)

// recount computes the listing aggregates the slow way, from the
// catalog's public API: every live claim the policy lists under its
// dataset's name, not restricted; and live records per origin.
func recount(c *Catalog) (names []string, orgs []OrgListing, live map[nii.NodeID]int, themes, keywords map[string]int) {
	var entries []Entry
	c.EachLive(func(e Entry) { entries = append(entries, e) })
	byOrg := map[string]*OrgListing{}
	themes, keywords = map[string]int{}, map[string]int{}
	for _, e := range entries {
		a := e.Advert
		if !c.Listed(e) || a.Meta.Access == nii.AccessRestricted {
			continue
		}
		for _, t := range a.Meta.Themes {
			themes[t]++
		}
		for _, k := range a.Meta.Keywords {
			keywords[k]++
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
	for _, d := range heldDatasets(c) {
		for _, e := range c.Lookup(d) {
			if !e.Advert.Withdrawn {
				live[e.Advert.Origin]++
			}
		}
	}
	return names, orgs, live, themes, keywords
}

// heldDatasets lists the datasets the catalog holds any record of.
func heldDatasets(c *Catalog) []nii.DatasetID {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Collect(maps.Keys(c.entries))
}

// testAlias names datasets and claims for SetAliases.
func testAlias(d nii.DatasetID, claim string) string { return "alias:" + claim + ":" + d.String() }

// checkAliases checks ByAlias against every dataset and claim held, and
// that no name of one no longer held is left behind.
func checkAliases(t *testing.T, step string, c *Catalog, ever []nii.DatasetID, origins []nii.NodeID) {
	t.Helper()
	want := 0
	for _, d := range ever {
		es := c.Lookup(d)
		if got, ok := c.ByAlias(testAlias(d, "")); ok != (len(es) > 0) || ok && got != d {
			t.Fatalf("%s: ByAlias(%s) = %v %v with %d records held", step, d, got, ok, len(es))
		}
		if len(es) > 0 {
			want++
		}
		claims := map[nii.NodeID]bool{}
		for _, e := range es {
			if !e.Advert.Replica {
				claims[e.Advert.Origin] = true
				want++
			}
		}
		for _, o := range origins {
			if got, ok := c.ByAlias(testAlias(d, ClaimID(o))); ok != claims[o] || ok && got != d {
				t.Fatalf("%s: ByAlias(claim of %s to %s) = %v %v, want %v", step, o.Short(), d, got, ok, claims[o])
			}
		}
	}
	c.mu.RLock()
	n := len(c.lists.aliases)
	c.mu.RUnlock()
	if n != want {
		t.Fatalf("%s: %d aliases kept, want %d", step, n, want)
	}
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
	c.SetAliases(testAlias)
	r := rand.New(rand.NewPCG(13, 1))
	idents := []ident{newIdent(), newIdent(), newIdent(), newIdent(), newIdent()}
	orgOf := []string{"greenwich", "lambeth", "greenwich", "camden", "lambeth"} // two claim greenwich, two lambeth
	seq := map[nii.NodeID]uint64{}
	version := map[string]uint64{}
	day := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

	// applied is the newest advert applied per origin and dataset: what
	// the catalog must read back from its store.
	applied := map[string]*nii.Advert{}
	var ever []nii.DatasetID
	var origins []nii.NodeID
	check := func(step string) {
		t.Helper()
		wantNames, wantOrgs, wantLive, wantThemes, wantKeywords := recount(c)
		if got := c.ListedThemes(); !maps.Equal(got, wantThemes) {
			t.Fatalf("%s: ListedThemes = %v, recount %v", step, got, wantThemes)
		}
		if got := c.ListedKeywords(); !maps.Equal(got, wantKeywords) {
			t.Fatalf("%s: ListedKeywords = %v, recount %v", step, got, wantKeywords)
		}
		checkAliases(t, step, c, ever, origins)
		// Search's hits carry the adverts applied, read back from the store.
		for _, h := range c.Search(search.Query{Sort: "key", Limit: 1000}).Hits {
			if want := applied[string(h.Doc.Advert.Origin)+" "+h.Doc.Advert.Dataset.String()]; !reflect.DeepEqual(h.Doc.Advert, want) {
				t.Fatalf("%s: search hit %s read back as %+v, applied %+v", step, h.Doc.Key, h.Doc.Advert, want)
			}
		}
		for _, d := range ever {
			for _, e := range c.Lookup(d) {
				want := applied[string(e.Advert.Origin)+" "+d.String()]
				if !reflect.DeepEqual(e.Advert, want) {
					t.Fatalf("%s: %s from %s read back as %+v, applied %+v", step, d, e.Advert.Origin.Short(), e.Advert, want)
				}
			}
		}
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
			Meta: nii.Metadata{Title: name, Publisher: org, Access: access, Issued: issued, Modified: issued,
				Themes: pick(r, "environment", "finance", "transport"), Keywords: pick(r, "spend", "trees", "bins", "roads")}}
		if withdrawn {
			a.Manifest, a.Meta = nii.Hash{}, nii.Metadata{}
		}
		sa, err := nii.SignAdvert(a, g.Key)
		if err != nil {
			t.Fatal(err)
		}
		got, fresh, err := c.Apply(sa)
		if err != nil && !errors.Is(err, ErrRejected) {
			t.Fatal(err)
		}
		if fresh {
			applied[string(g.ID)+" "+a.Dataset.String()] = got
			if !slices.Contains(ever, got.Dataset) {
				ever = append(ever, got.Dataset)
			}
			if !slices.Contains(origins, g.ID) {
				origins = append(origins, g.ID)
			}
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
			c.SetAliases(testAlias)
			what = "reopened"
		}
		check(fmt.Sprintf("step %d (%s)", step, what))
	}
	names2, _ := c.ListedNames(0, -1)
	if len(names2) == 0 {
		t.Error("the run ended with nothing listed: the test exercised too little")
	}
}

// pick returns a random subset of vals (nil for none), in order.
func pick(r *rand.Rand, vals ...string) []string {
	var out []string
	for _, v := range vals {
		if r.IntN(2) == 0 {
			out = append(out, v)
		}
	}
	return out
}
