package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

// TestHarmonyRestrictedAndPartial: a restricted source is merged only with
// a grant; without one the merge fails naming it, or with allow-partial
// goes on and the lineage says what is missing and why.
func TestHarmonyRestrictedAndPartial(t *testing.T) {
	admin, _ := auth.GenerateKey()
	pub := admin.Public().(ed25519.PublicKey)
	orgs := []string{"lga", "trafford"}
	nodes := nodetest.Federation(t, 2, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Org = orgs[i]
		cfg.Trust = []node.TrustAnchor{{Name: "test-admin", Key: base64.RawURLEncoding.EncodeToString(pub)}}
	}})
	lga, trafford := nodes[0], nodes[1]
	fed := lga.Config().Federation
	for _, n := range nodes {
		cred, _, err := auth.IssueCredential(admin, fed, n.ID(), n.Config().Org, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.InstallCredential(cred); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	publishStandard(t, lga)
	if _, err := trafford.Publish(ctx, bytes.NewReader(readFile(t, sharedSpend(t, "trafford"))), node.PublishRequest{Name: "spend", Filename: "spend.csv",
		Meta: nii.Metadata{Access: nii.AccessRestricted}}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 30*time.Second, "trafford lists the standard", func() bool { return sees(trafford, "lga/spend-over-500", 1) })
	if _, err := trafford.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "trafford/spend", Mapping: testMapping(t, "trafford")}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 30*time.Second, "lga lists trafford's file and mapping", func() bool {
		return sees(lga, "trafford/spend", 1) && sees(lga, "trafford/spend--map--lga-spend-over-500", 1)
	})
	std := nii.Ref{Dataset: lgaStd}

	_, err := lga.Merge(ctx, std, node.MergeOptions{})
	var me *harmony.MissingError
	if !errors.As(err, &me) || !errors.Is(err, nii.ErrUnavailable) || len(me.Missing) != 1 || me.Missing[0].Dataset.String() != "trafford/spend" ||
		!strings.Contains(err.Error(), "allow-partial") {
		t.Fatalf("merge without a grant: %v", err)
	}
	out, err := lga.Merge(ctx, std, node.MergeOptions{AllowPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Inputs) != 0 || len(out.Missing) != 1 {
		t.Fatalf("partial merge: %d inputs, %d missing", len(out.Inputs), len(out.Missing))
	}
	rec, err := lga.PublishMerged(ctx, out, "partial-spend", "")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := lga.Store().OpenManifest(rec)
	if len(m.Lineage.Missing) != 1 || m.Lineage.Missing[0].Source.Dataset.String() != "trafford/spend" || !strings.Contains(m.Lineage.Missing[0].Reason, "cannot be pulled") {
		t.Fatalf("lineage of a partial merge: %+v", m.Lineage)
	}

	grant, _, err := auth.IssueGrant(admin, auth.GrantSpec{Federation: fed, Subject: "lga",
		Datasets: []string{"trafford/spend"}, Actions: []nii.Action{"read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := auth.IssueGrant(admin, auth.GrantSpec{Federation: fed, Subject: "lga",
		Datasets: []string{"camden/*"}, Actions: []nii.Action{"read"}, TTL: time.Hour})
	out, err = lga.Merge(ctx, std, node.MergeOptions{Grants: []string{other, grant}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Inputs) != 1 || len(out.Missing) != 0 || out.Inputs[0].Result.Report.Accepted == 0 {
		t.Fatalf("merge with a grant: %d inputs, %d missing", len(out.Inputs), len(out.Missing))
	}
	rec, err = lga.PublishMerged(ctx, out, "partial-spend", "")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Ref.Version != 2 || rec.Meta.Access != nii.AccessRestricted {
		t.Fatalf("merged with a restricted source: %s, access %s", rec.Ref, rec.Meta.Access)
	}
}
