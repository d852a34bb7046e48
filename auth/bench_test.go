package auth

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/nii-uk/nii"
)

// BenchmarkGrantVerify measures checking a grant on first sight (signature
// verified, claims decoded) and when cached (time, request and revocation
// checks only). docs/benchmarks.md records the figures.
func BenchmarkGrantVerify(b *testing.B) {
	fx := newFixture(b)
	req := Request{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend-2024"}, Action: ActionRead, Node: fx.lambeth, Org: "lambeth"}
	b.Run("first-sight", func(b *testing.B) {
		toks := make([]string, b.N)
		for i := range toks {
			toks[i], _ = fx.grant(b, nil)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			fx.v.mu.Lock()
			fx.v.cache = nil // every token is new
			fx.v.mu.Unlock()
			if _, err := fx.v.CheckGrant(toks[i], req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		tok, _ := fx.grant(b, nil)
		fx.v.CheckGrant(tok, req)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := fx.v.CheckGrant(tok, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The reference: golang-jwt's own parse and verify of the same kind of
	// token, with no nii checks.
	b.Run("golang-jwt-parse", func(b *testing.B) {
		tok, _ := fx.grant(b, nil)
		pub := fx.admin.Public()
		p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := p.ParseWithClaims(tok, new(GrantClaims), func(*jwt.Token) (any, error) { return pub, nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fx.grant(b, nil)
		}
	})
}
