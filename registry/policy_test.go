package registry

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// claim is one record a policy test puts in the catalog.
type claim struct {
	who       string // key into the test's idents
	version   uint64
	replica   bool
	withdrawn bool
	verified  bool   // carries a credential for greenwich
	content   string // names the manifest: same content, same hash
	access    nii.Access
}

// TestSourcesPolicy is the table of the catalog policy: who is taken as a
// dataset's publisher and who serves a version, in what order.
func TestSourcesPolicy(t *testing.T) {
	names := []string{"greenwich", "mallory", "replica1", "replica2", "self"}
	manifest := func(content string) nii.Hash { return nii.HashOf([]byte(content)) }
	for _, tc := range []struct {
		name    string
		claims  []claim
		online  []string
		version uint64
		require bool // the node requires verified publishers (it has trust anchors)
		allow   bool // AllowUnverified
		// want
		err       error
		publisher string
		pinned    string // the manifest the content must hash to ("" none)
		providers []string
		remote    []string // Providers without self; nil: same as providers
		others    []string
		withdrawn bool
	}{
		{name: "nothing", err: ErrUnlisted},
		{name: "replicas but no claim", claims: []claim{{who: "replica1", version: 1, replica: true, content: "a"}}, err: ErrUnlisted},
		{name: "one unverified claim is accepted",
			claims:    []claim{{who: "greenwich", version: 3, content: "v3"}},
			publisher: "greenwich", pinned: "v3", providers: []string{"greenwich"}},
		{name: "verified beats unverified, whatever the versions",
			claims:    []claim{{who: "greenwich", version: 2, verified: true, content: "v2"}, {who: "mallory", version: 99, content: "evil"}},
			publisher: "greenwich", pinned: "v2", providers: []string{"greenwich"}, others: []string{"mallory"}},
		{name: "anchored: an unverified only claim is refused",
			claims:  []claim{{who: "mallory", version: 3, content: "evil"}},
			require: true, err: ErrUnverified},
		{name: "anchored: an unverified only claim with AllowUnverified",
			claims:  []claim{{who: "mallory", version: 3, content: "evil"}},
			require: true, allow: true,
			publisher: "mallory", pinned: "evil", providers: []string{"mallory"}},
		{name: "anchored: verified beats unverified",
			claims:    []claim{{who: "greenwich", version: 1, verified: true, content: "v1"}, {who: "mallory", version: 9, content: "evil"}},
			require:   true,
			publisher: "greenwich", pinned: "v1", providers: []string{"greenwich"}, others: []string{"mallory"}},
		{name: "anchored: AllowUnverified never picks between two unverified claims",
			claims:  []claim{{who: "greenwich", version: 2, content: "v2"}, {who: "mallory", version: 9, content: "evil"}},
			require: true, allow: true, err: ErrAmbiguous},
		{name: "two unverified claims are refused",
			claims: []claim{{who: "greenwich", version: 2, content: "v2"}, {who: "mallory", version: 99, content: "evil"}},
			err:    ErrAmbiguous},
		{name: "two unverified claims and a replica are refused",
			claims: []claim{{who: "greenwich", version: 2, content: "v2"}, {who: "mallory", version: 1, content: "evil"}, {who: "replica1", version: 2, replica: true, content: "v2"}},
			err:    ErrAmbiguous},
		{name: "withdrawn",
			claims:    []claim{{who: "greenwich", withdrawn: true}, {who: "replica1", version: 2, replica: true, content: "v2"}},
			publisher: "greenwich", withdrawn: true},
		{name: "a withdrawn other claim is not listed",
			claims:    []claim{{who: "greenwich", version: 1, verified: true, content: "v1"}, {who: "mallory", withdrawn: true}},
			publisher: "greenwich", pinned: "v1", providers: []string{"greenwich"}},
		{name: "replicas of other versions are excluded",
			claims: []claim{{who: "greenwich", version: 2, content: "v2"},
				{who: "replica1", version: 1, replica: true, content: "v1"}, {who: "replica2", version: 2, replica: true, content: "v2"}},
			publisher: "greenwich", pinned: "v2", providers: []string{"greenwich", "replica2"}},
		{name: "an older version: its replicas, and the publisher, nothing pinned",
			claims: []claim{{who: "greenwich", version: 2, content: "v2"},
				{who: "replica1", version: 1, replica: true, content: "v1"}, {who: "replica2", version: 2, replica: true, content: "v2"}},
			version:   1,
			publisher: "greenwich", providers: []string{"greenwich", "replica1"}},
		{name: "a replica of other content than the publisher's is excluded",
			claims: []claim{{who: "greenwich", version: 2, content: "v2"},
				{who: "replica1", version: 2, replica: true, content: "forged"}, {who: "replica2", version: 2, replica: true, content: "v2"}},
			publisher: "greenwich", pinned: "v2", providers: []string{"greenwich", "replica2"}},
		{name: "restricted is served by its publisher only",
			claims: []claim{{who: "greenwich", version: 2, content: "v2", access: nii.AccessRestricted},
				{who: "replica1", version: 2, replica: true, content: "v2", access: nii.AccessRestricted}},
			online:    []string{"replica1"},
			publisher: "greenwich", pinned: "v2", providers: []string{"greenwich"}},
		{name: "online first",
			claims: []claim{{who: "greenwich", version: 2, content: "v2"},
				{who: "replica1", version: 2, replica: true, content: "v2"}, {who: "replica2", version: 2, replica: true, content: "v2"}},
			online:    []string{"replica2"},
			publisher: "greenwich", pinned: "v2", providers: []string{"replica2", "greenwich", "replica1"}},
		{name: "the publisher first among the online",
			claims: []claim{{who: "greenwich", version: 2, content: "v2"},
				{who: "replica1", version: 2, replica: true, content: "v2"}, {who: "replica2", version: 2, replica: true, content: "v2"}},
			online:    []string{"replica2", "greenwich"},
			publisher: "greenwich", pinned: "v2", providers: []string{"greenwich", "replica2", "replica1"}},
		{name: "this node is a provider but never asked",
			claims:    []claim{{who: "greenwich", version: 2, content: "v2"}, {who: "self", version: 2, replica: true, content: "v2"}},
			online:    []string{"self"},
			publisher: "greenwich", pinned: "v2", providers: []string{"self", "greenwich"}, remote: []string{"greenwich"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := map[string]ident{}
			for _, n := range names {
				ids[n] = newIdent()
			}
			self := ids["self"]
			c, err := OpenCatalog(memDB(t), self.ID, self.Key, func(cred string, node nii.NodeID) (string, error) {
				org, ok := strings.CutPrefix(cred, "member-of:")
				if !ok {
					return "", errors.New("no")
				}
				return org, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			name := map[nii.NodeID]string{}
			for n, id := range ids {
				name[id.ID] = n
			}
			d := nii.DatasetID{Org: "greenwich", Name: "spend"}
			for _, cl := range tc.claims {
				id := ids[cl.who]
				a := nii.Advert{Dataset: d, Version: cl.version, Replica: cl.replica, Withdrawn: cl.withdrawn,
					Meta: nii.Metadata{Title: "Spend", Publisher: "greenwich", Access: cl.access}}
				if cl.access == "" {
					a.Meta.Access = nii.AccessOpen
				}
				if !cl.withdrawn {
					a.Manifest = manifest(cl.content)
				}
				if cl.verified {
					a.Credential = "member-of:greenwich"
				}
				if cl.who == "self" {
					if _, _, err := c.Sign(a); err != nil {
						t.Fatal(err)
					}
					continue
				}
				a.Origin, a.Seq, a.Signed = id.ID, 1, time.Now().UTC()
				sa, err := nii.SignAdvert(&a, id.Key)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := c.Apply(sa); err != nil {
					t.Fatal(err)
				}
			}
			online := func(n nii.NodeID) bool { return slices.Contains(tc.online, name[n]) }
			c.SetRequireVerified(tc.require)
			var opts []SourceOption
			if tc.allow {
				opts = append(opts, AllowUnverified())
			}

			s, err := c.Sources(nii.Ref{Dataset: d, Version: tc.version}, online, opts...)
			pub, perr := c.Publisher(d, opts...)
			// Public views list a claim under the dataset's name only if
			// the policy chooses it without being asked to allow more.
			for _, e := range c.Lookup(d) {
				want := false
				if p, err := c.Publisher(d); err == nil && !e.Advert.Replica {
					want = p.Advert.Origin == e.Advert.Origin
				}
				if c.Listed(e) != want {
					t.Fatalf("Listed(%s) = %v, want %v", name[e.Advert.Origin], !want, want)
				}
				if tc.require && !e.Verified && c.Listed(e) {
					t.Fatalf("an unverified claim by %s is listed on a node that requires verified publishers", name[e.Advert.Origin])
				}
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !errors.Is(perr, tc.err) {
					t.Fatalf("Sources: %v; Publisher: %v; want %v from both", err, perr, tc.err)
				}
				return
			}
			if err != nil || perr != nil {
				t.Fatalf("Sources: %v; Publisher: %v", err, perr)
			}
			if got := name[s.Publisher.Advert.Origin]; got != tc.publisher || pub.Advert.Origin != s.Publisher.Advert.Origin {
				t.Fatalf("publisher %s (Publisher says %s), want %s", got, name[pub.Advert.Origin], tc.publisher)
			}
			if s.Publisher.Advert.Withdrawn != tc.withdrawn {
				t.Fatalf("withdrawn %v, want %v", s.Publisher.Advert.Withdrawn, tc.withdrawn)
			}
			wantPin := nii.Hash{}
			if tc.pinned != "" {
				wantPin = manifest(tc.pinned)
			}
			if s.Manifest != wantPin {
				t.Fatalf("pinned manifest %s, want that of %q", s.Manifest, tc.pinned)
			}
			want := tc.version
			if want == 0 {
				want = s.Publisher.Advert.Version
			}
			if !tc.withdrawn && s.Version != want {
				t.Fatalf("version %d, want %d", s.Version, want)
			}
			var provs, remote, others []string
			for _, e := range s.Providers {
				provs = append(provs, name[e.Advert.Origin])
			}
			for _, id := range s.Remote() {
				remote = append(remote, name[id])
			}
			for _, e := range s.Others {
				others = append(others, name[e.Advert.Origin])
			}
			wantRemote := tc.remote
			if wantRemote == nil {
				wantRemote = tc.providers
			}
			if !slices.Equal(provs, tc.providers) || !slices.Equal(remote, wantRemote) || !slices.Equal(others, tc.others) {
				t.Fatalf("providers %v remote %v others %v; want %v, %v, %v", provs, remote, others, tc.providers, wantRemote, tc.others)
			}
		})
	}
}
