package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/internal/niitest"
)

const fed = "london"

// nodeID makes a valid node ID from a fresh key.
func nodeID(t testing.TB) nii.NodeID {
	_, id := niitest.Key(t)
	return id
}

type fixture struct {
	admin, mallory ed25519.PrivateKey
	anchors        *Anchors
	revoked        map[string]bool
	v              *Verifier
	lambeth        nii.NodeID // a node of lambeth
	other          nii.NodeID
	now            time.Time
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{revoked: map[string]bool{}, lambeth: nodeID(t), other: nodeID(t), now: time.Now()}
	f.admin, _ = GenerateKey()
	f.mallory, _ = GenerateKey()
	f.anchors = NewAnchors()
	f.anchors.Add(f.admin.Public().(ed25519.PublicKey), "london-admin")
	f.v = &Verifier{Anchors: f.anchors, Federation: fed, Revoked: func(j string) bool { return f.revoked[j] }}
	return f
}

func (f *fixture) grant(t testing.TB, mod func(*GrantSpec)) (string, *GrantClaims) {
	t.Helper()
	s := GrantSpec{Federation: fed, Subject: "lambeth", Datasets: []string{"greenwich/spend-*"}, Actions: []nii.Action{"read"}, TTL: time.Hour}
	if mod != nil {
		mod(&s)
	}
	tok, c, err := IssueGrant(f.admin, s)
	if err != nil {
		t.Fatal(err)
	}
	return tok, c
}

// handMint signs header and claims with Ed25519 directly, as any JOSE
// library would, without golang-jwt.
func handMint(t testing.TB, key ed25519.PrivateKey, hdr, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(input)))
}

func grantClaims(f *fixture, mod func(map[string]any)) map[string]any {
	now := f.now.Unix()
	c := map[string]any{
		"iss": KeyID(f.admin.Public().(ed25519.PublicKey)), "sub": "lambeth", "aud": fed,
		"iat": now, "nbf": now, "exp": now + 3600, "jti": NewID(),
		"datasets": []string{"greenwich/spend-*"}, "actions": []string{"read"},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func grantHeader(key ed25519.PrivateKey) map[string]any {
	return map[string]any{"alg": "EdDSA", "typ": TypeGrant, "kid": KeyID(key.Public().(ed25519.PublicKey))}
}

func TestAttackTokensRefusedWithTheirReason(t *testing.T) {
	f := newFixture(t)
	req := Request{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend-2024"}, Action: ActionRead, Node: f.lambeth, Org: "lambeth"}
	good, goodClaims := f.grant(t, nil)
	if _, err := f.v.CheckGrant(good, req); err != nil {
		t.Fatalf("a good grant is refused: %v", err)
	}
	adminKID := KeyID(f.admin.Public().(ed25519.PublicKey))
	parts := strings.Split(good, ".")

	// alg none: the same header and claims, no signature.
	noneHdr, _ := json.Marshal(map[string]any{"alg": "none", "typ": TypeGrant, "kid": adminKID})
	algNone := base64.RawURLEncoding.EncodeToString(noneHdr) + "." + parts[1] + "."
	// HS256 keyed with the issuer's public key: the classic key confusion.
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims)
	hs.Header["typ"], hs.Header["kid"] = TypeGrant, adminKID
	hsTok, err := hs.SignedString([]byte(f.admin.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs := jwt.NewWithClaims(jwt.SigningMethodRS256, goodClaims)
	rs.Header["typ"], rs.Header["kid"] = TypeGrant, adminKID
	rsTok, _ := rs.SignedString(rsaKey)
	// A tampered payload: widen the pattern, keep the signature.
	var m map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(b, &m)
	m["datasets"] = []string{"*/*"}
	b, _ = json.Marshal(m)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	// Mallory signs with her own key but names the admin's key ID.
	hdr := grantHeader(f.admin)
	forged := handMint(t, f.mallory, hdr, grantClaims(f, nil))
	untrusted := handMint(t, f.mallory, grantHeader(f.mallory), grantClaims(f, func(c map[string]any) {
		c["iss"] = KeyID(f.mallory.Public().(ed25519.PublicKey))
	}))
	expired, _ := f.grant(t, func(s *GrantSpec) { s.NotBefore = f.now.Add(-2 * time.Hour) })
	future, _ := f.grant(t, func(s *GrantSpec) { s.NotBefore = f.now.Add(time.Hour) })
	iatFuture := handMint(t, f.admin, hdr, grantClaims(f, func(c map[string]any) { c["iat"] = f.now.Add(time.Hour).Unix() }))
	wrongAud, _ := f.grant(t, func(s *GrantSpec) { s.Federation = "manchester" })
	otherDataset, _ := f.grant(t, func(s *GrantSpec) { s.Datasets = []string{"greenwich/planning-*", "lambeth/*"} })
	syncOnly, _ := f.grant(t, func(s *GrantSpec) { s.Actions = []nii.Action{"sync"} })
	bound, _ := f.grant(t, func(s *GrantSpec) { s.Node = f.other })
	otherOrg, _ := f.grant(t, func(s *GrantSpec) { s.Subject = "southwark" })
	revoked, revokedClaims := f.grant(t, nil)
	f.revoked[revokedClaims.ID] = true
	cred, _, err := IssueCredential(f.admin, fed, f.lambeth, "lambeth", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wrongIss := handMint(t, f.admin, hdr, grantClaims(f, func(c map[string]any) { c["iss"] = "london-admin" }))
	noExp := handMint(t, f.admin, hdr, grantClaims(f, func(c map[string]any) { delete(c, "exp") }))
	noJTI := handMint(t, f.admin, hdr, grantClaims(f, func(c map[string]any) { delete(c, "jti") }))
	badExp := handMint(t, f.admin, hdr, grantClaims(f, func(c map[string]any) { c["exp"] = "tomorrow" }))
	noTyp := handMint(t, f.admin, map[string]any{"alg": "EdDSA", "kid": adminKID}, grantClaims(f, nil))
	// crit names an extension the signer says must be understood: a
	// verifier that does not implement it must refuse (RFC 7515 §4.1.11).
	critHdr := grantHeader(f.admin)
	critHdr["crit"], critHdr["exp-ext"] = []string{"exp-ext"}, true
	crit := handMint(t, f.admin, critHdr, grantClaims(f, nil))
	emptyCritHdr := grantHeader(f.admin)
	emptyCritHdr["crit"] = []string{}
	emptyCrit := handMint(t, f.admin, emptyCritHdr, grantClaims(f, nil))
	// A century-long grant, signed by a trusted issuer by hand (IssueGrant
	// refuses to make one): the node's maximum lifetime refuses it.
	century := handMint(t, f.admin, hdr, grantClaims(f, func(c map[string]any) { c["exp"] = f.now.AddDate(100, 0, 0).Unix() }))

	for _, tc := range []struct {
		name, token, reason string
		req                 Request
	}{
		{"alg none", algNone, ReasonAlg, req},
		{"HS256 keyed with the public key", hsTok, ReasonAlg, req},
		{"RS256", rsTok, ReasonAlg, req},
		{"untrusted issuer key", untrusted, ReasonUntrusted, req},
		{"forged with the anchor's kid", forged, ReasonSignature, req},
		{"tampered payload", tampered, ReasonSignature, req},
		{"expired", expired, ReasonExpired, req},
		{"not yet valid", future, ReasonNotYetValid, req},
		{"issued in the future", iatFuture, ReasonNotYetValid, req},
		{"wrong audience", wrongAud, ReasonAudience, req},
		{"dataset outside the pattern", otherDataset, ReasonDataset, req},
		{"wrong action", good, ReasonAction, Request{Dataset: req.Dataset, Action: ActionSync, Node: f.lambeth, Org: "lambeth"}},
		{"grant allows only sync", syncOnly, ReasonAction, req},
		{"bound to another node", bound, ReasonBound, req},
		{"for another org", otherOrg, ReasonSubject, req},
		{"org grant, org unproven", good, ReasonSubject, Request{Dataset: req.Dataset, Action: ActionRead, Node: f.lambeth}},
		{"revoked jti", revoked, ReasonRevoked, req},
		{"a credential passed as a grant", cred, ReasonType, req},
		{"no typ", noTyp, ReasonType, req},
		{"crit names an unknown extension", crit, ReasonCrit, req},
		{"crit empty (forbidden by RFC 7515)", emptyCrit, ReasonCrit, req},
		{"iss is not the key", wrongIss, ReasonIssuer, req},
		{"no exp", noExp, ReasonClaims, req},
		{"no jti", noJTI, ReasonClaims, req},
		{"exp not a number", badExp, ReasonMalformed, req},
		{"valid for a century", century, ReasonLifetime, req},
		{"no grant", "", ReasonNoGrant, req},
		{"garbage", "not a token", ReasonMalformed, req},
		{"two parts", "eyJhbGciOiJFZERTQSJ9.e30", ReasonMalformed, req},
		{"header not base64", "!!!.e30.AAAA", ReasonMalformed, req},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".e30.AAAA", ReasonMalformed, req},
		{"oversized", strings.Repeat("A", MaxTokenSize+1), ReasonTooLarge, req},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.v.CheckGrant(tc.token, tc.req)
			if got := ReasonOf(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			if strings.Contains(err.Error(), tc.token) && tc.token != "" {
				t.Fatal("the refusal echoes the token")
			}
		})
	}
}

func TestGrantSubjects(t *testing.T) {
	f := newFixture(t)
	d := nii.DatasetID{Org: "greenwich", Name: "spend-2024"}
	toNode, _ := f.grant(t, func(s *GrantSpec) { s.Subject = string(f.lambeth) })
	if _, err := f.v.CheckGrant(toNode, Request{Dataset: d, Action: ActionRead, Node: f.lambeth}); err != nil {
		t.Fatalf("a grant to a node, used by it: %v", err)
	}
	if _, err := f.v.CheckGrant(toNode, Request{Dataset: d, Action: ActionRead, Node: f.other, Org: "lambeth"}); ReasonOf(err) != ReasonSubject {
		t.Fatalf("a grant to a node, used by another: %v", err)
	}
	bound, _ := f.grant(t, func(s *GrantSpec) { s.Node = f.lambeth })
	if _, err := f.v.CheckGrant(bound, Request{Dataset: d, Action: ActionRead, Node: f.lambeth, Org: "lambeth"}); err != nil {
		t.Fatalf("a bound grant used by its node: %v", err)
	}
	// Leeway: a grant that expired 10 s ago still passes; one 10 min ago
	// does not.
	f.v.Now = func() time.Time { return time.Now().Add(time.Hour + 10*time.Second) }
	g, _ := f.grant(t, nil)
	if _, err := f.v.CheckGrant(g, Request{Dataset: d, Action: ActionRead, Node: f.lambeth, Org: "lambeth"}); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	f.v.Now = func() time.Time { return time.Now().Add(time.Hour + 10*time.Minute) }
	if _, err := f.v.CheckGrant(g, Request{Dataset: d, Action: ActionRead, Node: f.lambeth, Org: "lambeth"}); ReasonOf(err) != ReasonExpired {
		t.Fatalf("a cached grant past expiry: %v", err)
	}
}

// Tokens minted by hand (as any JOSE library would) are accepted, and
// nii's tokens verify with nothing but Ed25519 and the published JWK.
func TestInteropWithStandardJOSE(t *testing.T) {
	f := newFixture(t)
	req := Request{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend-q1"}, Action: ActionRead, Node: f.lambeth, Org: "lambeth"}
	if _, err := f.v.CheckGrant(handMint(t, f.admin, grantHeader(f.admin), grantClaims(f, nil)), req); err != nil {
		t.Fatalf("hand-minted grant: %v", err)
	}
	// Without kid, iss names the key.
	if _, err := f.v.CheckGrant(handMint(t, f.admin, map[string]any{"alg": "EdDSA", "typ": TypeGrant}, grantClaims(f, nil)), req); err != nil {
		t.Fatalf("grant without kid: %v", err)
	}
	tok, _ := f.grant(t, nil)
	jwks, _ := json.Marshal(f.anchors.JWKS())
	var set struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg string }
	}
	json.Unmarshal(jwks, &set)
	if len(set.Keys) != 1 || set.Keys[0].Kty != "OKP" || set.Keys[0].Crv != "Ed25519" || set.Keys[0].Alg != "EdDSA" {
		t.Fatalf("jwks: %s", jwks)
	}
	pub, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatal("nii's grant does not verify with plain Ed25519 and the JWK")
	}
	// RFC 7638's thumbprint of RFC 8037's example key (appendix A.3).
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got := KeyID(x); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("thumbprint %s", got)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k, _ := GenerateKey()
	pemb, err := MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.key")
	os.WriteFile(path, pemb, 0o644)
	if _, err := LoadPrivateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable key was loaded: %v", err)
	}
	os.Chmod(path, 0o600)
	k2, err := LoadPrivateKey(path)
	if err != nil || !k2.Equal(k) {
		t.Fatalf("load: %v", err)
	}
	pub := k.Public().(ed25519.PublicKey)
	jwk, _ := json.Marshal(PublicJWK(pub, "london-admin"))
	for name, in := range map[string][]byte{
		"jwk":  jwk,
		"jwks": []byte(`{"keys":[` + string(jwk) + `]}`),
	} {
		got, _, err := ParsePublicKey(in)
		if err != nil || !got.Equal(pub) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, _, err := ParsePublicKey(pemb); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("a private key was taken as a public one: %v", err)
	}
	bad := PublicJWK(pub, "")
	bad.Kid = "wrong"
	b, _ := json.Marshal(bad)
	if _, _, err := ParsePublicKey(b); err == nil {
		t.Fatal("a JWK whose kid is not its thumbprint was accepted")
	}
	if _, _, err := ParsePublicKey([]byte(`{"kty":"RSA","n":"x","e":"AQAB"}`)); err == nil {
		t.Fatal("an RSA key was accepted as an issuer")
	}
}

func TestIssueRefusesBadSpecs(t *testing.T) {
	k, _ := GenerateKey()
	base := GrantSpec{Federation: fed, Subject: "lambeth", Datasets: []string{"greenwich/*"}, Actions: []nii.Action{"read"}, TTL: time.Hour}
	for name, mod := range map[string]func(*GrantSpec){
		"no federation":  func(s *GrantSpec) { s.Federation = "" },
		"bad subject":    func(s *GrantSpec) { s.Subject = "Lambeth Council" },
		"no datasets":    func(s *GrantSpec) { s.Datasets = nil },
		"bad pattern":    func(s *GrantSpec) { s.Datasets = []string{"greenwich"} },
		"broken pattern": func(s *GrantSpec) { s.Datasets = []string{"greenwich/[a"} },
		"bad action":     func(s *GrantSpec) { s.Actions = []nii.Action{"write"} },
		"no ttl":         func(s *GrantSpec) { s.TTL = 0 },
		"over a year":    func(s *GrantSpec) { s.TTL = DefaultMaxGrantLifetime + time.Hour },
		"pattern *":      func(s *GrantSpec) { s.Datasets = []string{"*"} },
		"bad node":       func(s *GrantSpec) { s.Node = "12D3KooWnope" },
	} {
		s := base
		mod(&s)
		if _, _, err := IssueGrant(k, s); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
}

func TestCredentials(t *testing.T) {
	f := newFixture(t)
	cred, _, err := IssueCredential(f.admin, fed, f.lambeth, "lambeth", "London Borough of Lambeth", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.v.VerifyCredential(cred, f.lambeth)
	if err != nil || c.Org != "lambeth" || c.Name != "London Borough of Lambeth" {
		t.Fatalf("credential: %+v %v", c, err)
	}
	if _, err := f.v.VerifyCredential(cred, f.other); ReasonOf(err) != ReasonSubject {
		t.Fatalf("another node's credential: %v", err)
	}
	g, _ := f.grant(t, nil)
	if _, err := f.v.VerifyCredential(g, f.lambeth); ReasonOf(err) != ReasonType {
		t.Fatalf("a grant as a credential: %v", err)
	}
	f.revoked[c.ID] = true
	if _, err := f.v.VerifyCredential(cred, f.lambeth); ReasonOf(err) != ReasonRevoked {
		t.Fatalf("a revoked credential: %v", err)
	}
	// Removing the anchor voids what it signed, cached or not.
	delete(f.revoked, c.ID)
	f.anchors.Remove(KeyID(f.admin.Public().(ed25519.PublicKey)))
	if _, err := f.v.VerifyCredential(cred, f.lambeth); ReasonOf(err) != ReasonUntrusted {
		t.Fatalf("after the anchor is removed: %v", err)
	}
}

func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	return niitest.OpenDB(t, dir)
}

func TestRevocationsPersist(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	db := openDB(t, dir)
	revs, err := OpenRevocations(db, f.v)
	if err != nil {
		t.Fatal(err)
	}
	f.v.Revoked = revs.Revoked
	g, gc := f.grant(t, nil)
	req := Request{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend-1"}, Action: ActionRead, Node: f.lambeth, Org: "lambeth"}
	if _, err := f.v.CheckGrant(g, req); err != nil {
		t.Fatal(err)
	}
	rv, _, _ := IssueRevocation(f.admin, fed, gc.ID, 24*time.Hour)
	if jti, isNew, err := revs.Add(rv); err != nil || !isNew || jti != gc.ID {
		t.Fatalf("add: %v %v %v", jti, isNew, err)
	}
	if _, isNew, _ := revs.Add(rv); isNew {
		t.Fatal("a revocation was new twice")
	}
	forged, _, _ := IssueRevocation(f.mallory, fed, "someone-elses", time.Hour)
	if _, _, err := revs.Add(forged); ReasonOf(err) != ReasonUntrusted {
		t.Fatalf("a revocation by an untrusted key: %v", err)
	}
	if _, err := f.v.CheckGrant(g, req); ReasonOf(err) != ReasonRevoked {
		t.Fatalf("revoked grant: %v", err)
	}
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	revs, err = OpenRevocations(db, f.v)
	if err != nil || !revs.Revoked(gc.ID) || revs.Len() != 1 {
		t.Fatalf("after reopening: %v %d", err, revs.Len())
	}
	if n, _ := revs.Prune(time.Now().Add(48 * time.Hour)); n != 1 || revs.Revoked(gc.ID) {
		t.Fatalf("prune: %d", n)
	}
}

func TestAuditLogPagesAndPrunes(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	l, err := OpenAuditLog(db)
	if err != nil {
		t.Fatal(err)
	}
	node := nodeID(t)
	start := time.Now().Add(-time.Hour).UTC()
	for i := 0; i < 25; i++ {
		res, reason := Allowed, ReasonGranted
		if i%5 == 0 {
			res, reason = Refused, ReasonExpired
		}
		ds := "greenwich/spend@1"
		if i%2 == 0 {
			ds = "greenwich/planning@3"
		}
		if _, err := l.Append(Record{Time: start.Add(time.Duration(i) * time.Minute), Node: node, Dataset: ds, Action: "read", Result: res, Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
	var all []Record
	for after := uint64(0); ; {
		recs, next, err := l.Page(AuditQuery{After: after, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
		if next == 0 {
			break
		}
		after = next
	}
	if len(all) != 25 || all[0].Seq != 1 || all[24].Seq != 25 {
		t.Fatalf("paged %d records", len(all))
	}
	refused, _, _ := l.Page(AuditQuery{Result: Refused})
	if len(refused) != 5 {
		t.Fatalf("refused: %d", len(refused))
	}
	newest, next, _ := l.Page(AuditQuery{Newest: true, Limit: 3, Dataset: "greenwich/planning"})
	if len(newest) != 3 || newest[0].Seq != 25 || newest[1].Seq != 23 || next != 21 {
		t.Fatalf("newest: %+v next %d", newest, next)
	}
	if l.Counts()[[2]string{Refused, ReasonExpired}] != 5 {
		t.Fatalf("counts %v", l.Counts())
	}
	if _, _, err := l.Page(AuditQuery{Result: "maybe"}); err == nil {
		t.Fatal("a bad filter was accepted")
	}
	if n, err := l.Prune(start.Add(10 * time.Minute)); err != nil || n != 10 {
		t.Fatalf("prune: %d %v", n, err)
	}
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	l, _ = OpenAuditLog(db)
	r, _ := l.Append(Record{Node: node, Dataset: "x/y@1", Result: Allowed, Reason: ReasonOpen})
	if r.Seq != 26 {
		t.Fatalf("seq after reopening: %d", r.Seq)
	}
	recs, _, _ := l.Page(AuditQuery{})
	if len(recs) != 16 || recs[0].Seq != 11 {
		t.Fatalf("after prune and reopen: %d records, first %d", len(recs), recs[0].Seq)
	}
}

func TestInspect(t *testing.T) {
	f := newFixture(t)
	g, gc := f.grant(t, nil)
	rep := f.v.Inspect(g, nil)
	if !rep.Valid || rep.Type != TypeGrant || rep.Claims["jti"] != gc.ID || rep.Expires.IsZero() {
		t.Fatalf("inspect: %+v", rep)
	}
	rep = f.v.Inspect(g, &Request{Dataset: nii.DatasetID{Org: "camden", Name: "spend"}, Action: ActionRead, Node: f.lambeth, Org: "lambeth"})
	if rep.Valid || rep.Reason != ReasonDataset {
		t.Fatalf("inspect with a request: %+v", rep)
	}
	if rep := f.v.Inspect("junk", nil); rep.Valid || rep.Reason != ReasonMalformed {
		t.Fatalf("inspect junk: %+v", rep)
	}
}

// A longer revocation of the same token replaces a shorter one (an admin
// correcting a too-short --ttl), on disk too; a shorter one never
// replaces a longer. Copies of a held revocation cost no signature check.
func TestRevocationLongestWins(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	db := openDB(t, dir)
	revs, err := OpenRevocations(db, f.v)
	if err != nil {
		t.Fatal(err)
	}
	f.v.Revoked = revs.Revoked
	tok, gc := f.grant(t, func(s *GrantSpec) { s.TTL = 30 * 24 * time.Hour })
	req := Request{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend-2024"}, Action: ActionRead, Node: f.lambeth, Org: "lambeth"}
	short, _, _ := IssueRevocation(f.admin, fed, gc.ID, time.Minute)
	long, _, _ := IssueRevocation(f.admin, fed, gc.ID, MaxTTL)
	if _, isNew, err := revs.Add(short); err != nil || !isNew {
		t.Fatal(isNew, err)
	}
	if _, isNew, err := revs.Add(long); err != nil || !isNew {
		t.Fatalf("the longer revocation was not taken: %v %v", isNew, err)
	}
	if _, isNew, _ := revs.Add(short); isNew {
		t.Fatal("the shorter revocation replaced the longer")
	}
	if n, _ := revs.Prune(time.Now().Add(2 * time.Minute)); n != 0 {
		t.Fatalf("pruned %d: the long revocation went", n)
	}
	if _, err := f.v.CheckGrant(tok, req); ReasonOf(err) != ReasonRevoked {
		t.Fatalf("after the short revocation's expiry: %v", err)
	}
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	revs, _ = OpenRevocations(db, f.v)
	if l := revs.List(); len(l) != 1 || l[0].Token != long {
		t.Fatalf("after reopening: %+v", l)
	}
	// Forged tokens are refused once, then from the cache.
	forged := long[:len(long)-4] + "AAAA"
	for range 2 {
		if _, _, err := revs.Add(forged); ReasonOf(err) != ReasonSignature {
			t.Fatalf("forged revocation: %v", err)
		}
	}
}

func TestWriteKeyPair(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "london-admin.key")
	kp, err := WriteKeyPair(path, "london-admin")
	if err != nil {
		t.Fatal(err)
	}
	if kp.PublicPath != filepath.Join(dir, "london-admin.pub") || PublicPath(filepath.Join(dir, "admin")) != filepath.Join(dir, "admin.pub") {
		t.Fatalf("public path %q", kp.PublicPath)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", fi, err)
	}
	k, err := LoadPrivateKey(path)
	if err != nil || !k.Equal(kp.Key) {
		t.Fatalf("reloaded key: %v", err)
	}
	b, err := os.ReadFile(kp.PublicPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, name, err := ParsePublicKey(b)
	if err != nil || !pub.Equal(kp.Key.Public()) || name != "london-admin" || kp.Public.Kid != KeyID(pub) {
		t.Fatalf("public key file: %v %q %v", pub, name, err)
	}
	if _, err := WriteKeyPair(path, "again"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second WriteKeyPair: %v, want a refusal", err)
	}
	if again, _ := LoadPrivateKey(path); !again.Equal(kp.Key) {
		t.Fatal("the key was overwritten")
	}
	// The public half existing alone is enough to refuse, and nothing is written.
	other := filepath.Join(dir, "other.key")
	if err := os.WriteFile(PublicPath(other), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteKeyPair(other, "other"); err == nil {
		t.Fatal("WriteKeyPair wrote beside an existing public key")
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("private key written though the pair was refused: %v", err)
	}
}

// An authentic grant refused after its signature verified comes back with
// its claims, so the audit log can name it; a token no anchor signed gives
// only the jti it claims, which a record marks unverified.
func TestRefusedGrantsKeepTheirID(t *testing.T) {
	f := newFixture(t)
	req := Request{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend-2024"}, Action: ActionRead, Node: f.lambeth, Org: "lambeth"}
	expired, ec := f.grant(t, func(s *GrantSpec) { s.NotBefore = f.now.Add(-2 * time.Hour) })
	future, fc := f.grant(t, func(s *GrantSpec) { s.NotBefore = f.now.Add(time.Hour) })
	wrongAud, ac := f.grant(t, func(s *GrantSpec) { s.Federation = "manchester" })
	revoked, rc := f.grant(t, nil)
	f.revoked[rc.ID] = true
	for _, tc := range []struct {
		name, token, reason, id string
	}{
		{"expired", expired, ReasonExpired, ec.ID},
		{"not yet valid", future, ReasonNotYetValid, fc.ID},
		{"wrong audience", wrongAud, ReasonAudience, ac.ID},
		{"revoked", revoked, ReasonRevoked, rc.ID},
	} {
		g, err := f.v.CheckGrant(tc.token, req)
		if ReasonOf(err) != tc.reason || g == nil || g.ID != tc.id {
			t.Fatalf("%s: reason %q, claims %v", tc.name, ReasonOf(err), g)
		}
		var r Record
		r.SetGrant(tc.token, g)
		if r.Grant != tc.id || r.GrantUnverified {
			t.Fatalf("%s: record grant %q unverified=%v", tc.name, r.Grant, r.GrantUnverified)
		}
	}
	untrusted := handMint(t, f.mallory, grantHeader(f.mallory), grantClaims(f, func(c map[string]any) { c["jti"] = "mallory-1" }))
	g, err := f.v.CheckGrant(untrusted, req)
	if ReasonOf(err) != ReasonUntrusted || g != nil {
		t.Fatalf("untrusted: %v %v", err, g)
	}
	var r Record
	r.SetGrant(untrusted, g)
	if r.Grant != "mallory-1" || !r.GrantUnverified {
		t.Fatalf("untrusted: record grant %q unverified=%v", r.Grant, r.GrantUnverified)
	}
	r.SetGrant("not a token", nil)
	if r.Grant != "" || r.GrantUnverified {
		t.Fatalf("garbage: record grant %q", r.Grant)
	}
}
