package registrytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TimeGet serves one GET of path (with an Accept header, if given) by h in
// process and returns how long h took. The response is encoded into
// nothing, so a benchmark pays for encoding but not for keeping the bytes;
// a status other than 200 fails the benchmark.
func TimeGet(tb testing.TB, h http.Handler, path, accept string) time.Duration {
	tb.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	w := &discardWriter{header: http.Header{}}
	t := time.Now()
	h.ServeHTTP(w, req)
	d := time.Since(t)
	if w.code != 0 && w.code != http.StatusOK {
		tb.Fatalf("GET %s: %d", path, w.code)
	}
	return d
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	code   int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) { return io.Discard.Write(p) }
