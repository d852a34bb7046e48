package node_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

// TestErrorKindsCrossTheAPI shows each error kind a node's handlers can
// produce reaching a Go client of its local API as that kind: errors.Is
// with the root kind works on the client side, and a refusal keeps its
// reason. (node/api's own tests check every row of the table, exists and
// corrupt included, which no request to a healthy node produces.)
func TestErrorKindsCrossTheAPI(t *testing.T) {
	// org1's node claims org0 too, unverified: org0/shared has two claims.
	// Node 3 is registry-only.
	nodes := nodetest.Federation(t, 4, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		switch i {
		case 1:
			cfg.Org = "org0"
		case 3:
			cfg.RegistryOnly = true
		}
	}})
	a, b, c, reg := nodes[0], nodes[1], nodes[2], nodes[3]
	ctx := context.Background()
	publish := func(n *node.Node, name string, access nii.Access) {
		t.Helper()
		if _, err := n.Publish(ctx, bytes.NewReader([]byte("a,b\n1,2\n")), node.PublishRequest{Name: name, Meta: nii.Metadata{Access: access}}); err != nil {
			t.Fatal(err)
		}
	}
	publish(a, "shared", nii.AccessOpen)
	publish(b, "shared", nii.AccessOpen)
	publish(a, "secret", nii.AccessRestricted)
	publish(b, "gone", nii.AccessOpen)
	nodetest.WaitFor(t, 30*time.Second, "node 2 lists every dataset", func() bool {
		// Two unverified claims: the catalog holds both, and the policy
		// (LookupDataset) refuses to choose.
		if len(c.Catalog().Lookup(nii.DatasetID{Org: "org0", Name: "shared"})) < 2 {
			return false
		}
		for _, name := range []string{"secret", "gone"} {
			if _, err := c.LookupDataset(nii.DatasetID{Org: "org0", Name: name}); err != nil {
				return false
			}
		}
		return true
	})

	cl, err := api.Dial(c.Config().Home)
	if err != nil {
		t.Fatal(err)
	}
	regCl, err := api.Dial(reg.Config().Home)
	if err != nil {
		t.Fatal(err)
	}
	anon := *cl
	anon.Token = ""
	pull := func(cl *api.Client, ref string) error {
		r, err := nii.ParseRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Pull(ctx, r, "", nil)
		return err
	}
	check := func(what string, err, kind error) {
		t.Helper()
		var re *api.RemoteError
		switch {
		case !errors.As(err, &re):
			t.Errorf("%s: %v (%T), want a *api.RemoteError", what, err, err)
		case !errors.Is(err, kind):
			t.Errorf("%s: %v (code %q), want kind %v", what, err, re.Code, kind)
		case nii.KindOf(err) != kind:
			t.Errorf("%s: of kind %v as well as %v", what, nii.KindOf(err), kind)
		}
	}

	_, err = cl.Search(ctx, url.Values{"sort": {"sideways"}})
	check("bad sort", err, nii.ErrInvalid)
	check("pull without the admin token", pull(&anon, "org0/shared"), nii.ErrUnauthorized)
	_, err = cl.Version(ctx, nii.Ref{Dataset: nii.DatasetID{Org: "org2", Name: "nothing"}})
	check("unknown version", err, nii.ErrNotFound)
	check("pull of a dataset two unverified nodes claim", pull(cl, "org0/shared"), nii.ErrAmbiguous)
	err = pull(cl, "org0/secret")
	check("pull of a restricted dataset with no grant", err, nii.ErrRefused)
	if got := nii.ReasonOf(err); got != auth.ReasonNoGrant {
		t.Errorf("refusal reason %q, want %q (err: %v)", got, auth.ReasonNoGrant, err)
	}
	check("pull on a registry-only node", pull(regCl, "org0/secret"), nii.ErrConflict)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	check("pull from a publisher that has gone", pull(cl, "org0/gone"), nii.ErrUnavailable)
}
