package node_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// TestTrustIssuerListsAKeyOnce: the offline path ('nii trust add' with no
// daemon) and the daemon's AddTrust are one edit of config.toml, which
// lists a key once however often it is added, and folds the copies an
// older offline add left.
func TestTrustIssuerListsAKeyOnce(t *testing.T) {
	cfg := nodetest.Config(t.TempDir(), "greenwich", nodetest.Options{})
	if _, err := node.Init(cfg); err != nil {
		t.Fatal(err)
	}
	k, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(ed25519.PublicKey)
	kid := auth.KeyID(pub)
	trusted := func(when string) []node.TrustAnchor {
		t.Helper()
		c, err := node.LoadConfig(cfg.Home)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		return c.Trust
	}

	for _, name := range []string{"london-admin", "london-admin", "london"} {
		if err := node.TrustIssuer(cfg.Home, pub, name); err != nil {
			t.Fatal(err)
		}
	}
	if ts := trusted("three offline adds"); len(ts) != 1 || ts[0].KID != kid || ts[0].Name != "london" {
		t.Fatalf("after three offline adds: %+v, want the key once, named london", ts)
	}

	// A home an older offline add left with two copies.
	if err := node.EditConfig(cfg.Home, func(c *node.Config) error {
		c.Trust = append(c.Trust, c.Trust[0])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ts := trusted("a copy"); len(ts) != 2 {
		t.Fatalf("set-up: %d entries", len(ts))
	}
	n := nodetest.Restart(t, cfg)
	if _, err := n.AddTrust(pub, "london-admin"); err != nil {
		t.Fatal(err)
	}
	if ts := trusted("the daemon's add"); len(ts) != 1 || ts[0].Name != "london-admin" {
		t.Fatalf("after the daemon's add: %+v, want the key once", ts)
	}
	if len(n.Trust()) != 1 {
		t.Fatalf("the node trusts %d keys, want 1", len(n.Trust()))
	}
	if err := n.RemoveTrust(kid); err != nil {
		t.Fatal(err)
	}
	if ts := trusted("remove"); len(ts) != 0 {
		t.Fatalf("after remove: %+v", ts)
	}
}
