package web

import (
	"net/http"
	"testing"

	"github.com/nii-uk/nii"
)

// FuzzWantsHTML: any Accept header is answered without panic, and a
// header without text/html never gets a page.
func FuzzWantsHTML(f *testing.F) {
	for _, s := range []string{"", "*/*", "text/html", "application/json", "text/html;q=0.1, application/json", "text/html;q=abc", ";;,,", "text/html, application/ld+json;q=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, acc string) {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Accept", acc)
		if WantsHTML(r) && !containsFold(acc, "html") {
			t.Fatalf("Accept %q: a page, though it names no HTML type", acc)
		}
	})
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		ok := true
		for j := 0; j < len(sub); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// FuzzPreviewCSV: any prefix of a file previews without panic, within the
// row bound.
func FuzzPreviewCSV(f *testing.F) {
	f.Add([]byte("a,b\n1,2\n"), 1, ",", true)
	f.Add([]byte("\xef\xbb\xbftitle\n\nx;y\n\"1;2\";3\n"), 3, ";", false)
	f.Add([]byte("a,\"b\n"), 0, "", true)
	f.Fuzz(func(t *testing.T, b []byte, headerRow int, delim string, cut bool) {
		tbl := &nii.Table{HeaderRow: headerRow % 20, Delimiter: delim}
		if len(delim) > 0 && (delim[0] == '"' || delim[0] == '\n' || delim[0] == '\r' || delim[0] >= 0x80) {
			tbl.Delimiter = ""
		}
		_, rows, _ := previewCSV(b, tbl, 5, cut)
		if len(rows) > 5 {
			t.Fatalf("%d rows, bound 5", len(rows))
		}
	})
}
