package auth

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// FuzzCheckGrant feeds arbitrary tokens to grant verification: it must
// never panic, and nothing but a genuine grant from the anchor may pass.
func FuzzCheckGrant(f *testing.F) {
	fx := newFixture(f)
	good, _ := fx.grant(f, nil)
	cred, _, _ := IssueCredential(fx.admin, fed, fx.lambeth, "lambeth", "", time.Hour)
	for _, s := range []string{good, cred, "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", good + "x", good[:len(good)/2]} {
		f.Add(s)
	}
	req := Request{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend-2024"}, Action: ActionRead, Node: fx.lambeth, Org: "lambeth"}
	f.Fuzz(func(t *testing.T, tok string) {
		g, err := fx.v.CheckGrant(tok, req)
		if err == nil && (g == nil || g.Issuer != KeyID(fx.admin.Public().(ed25519.PublicKey))) {
			t.Fatalf("accepted a grant not from the anchor: %+v", g)
		}
		if err != nil && ReasonOf(err) == "" {
			t.Fatalf("a refusal without a reason: %v", err)
		}
		fx.v.Inspect(tok, &req)
	})
}

// FuzzCredentialAndRevocation feeds arbitrary tokens to credential and
// revocation verification and to public-key parsing.
func FuzzCredentialAndRevocation(f *testing.F) {
	fx := newFixture(f)
	cred, _, _ := IssueCredential(fx.admin, fed, fx.lambeth, "lambeth", "Lambeth", time.Hour)
	rv, _, _ := IssueRevocation(fx.admin, fed, "abc", time.Hour)
	for _, s := range []string{cred, rv, `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`, "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if c, err := fx.v.VerifyCredential(tok, fx.lambeth); err == nil && c.Subject != string(fx.lambeth) {
			t.Fatalf("credential for another node accepted: %+v", c)
		}
		fx.v.VerifyRevocation(tok)
		ParsePublicKey([]byte(tok))
	})
}
