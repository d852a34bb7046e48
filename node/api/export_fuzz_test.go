package api

import (
	"testing"
	"unicode/utf8"
)

// FuzzParseExportRequest: any bytes a client of the export socket sends
// are refused with an error or give a request with a token and a valid
// reference; nothing panics.
func FuzzParseExportRequest(f *testing.F) {
	for _, s := range []string{
		`{"token":"t","ref":"greenwich/spend@3"}`,
		`{"token":"t","ref":"greenwich/spend"}`,
		`{"token":"","ref":"greenwich/spend"}`,
		`{"token":"t","ref":"greenwich/spend","extra":1}`,
		`{"token":"t","ref":"greenwich/spend"} {}`,
		`{"token":"t","ref":"../../etc/passwd"}`,
		`[]`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, ref, err := ParseExportRequest(b)
		if err != nil {
			return
		}
		if req.Token == "" || ref.Dataset.Org == "" || ref.Dataset.Name == "" || len(b) > MaxExportMessage || !utf8.ValidString(ref.String()) {
			t.Fatalf("accepted %q as %+v %v", b, req, ref)
		}
	})
}
