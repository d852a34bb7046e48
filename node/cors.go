package node

import "net/http"

// CORS, by hand rather than with a library: the policy is fixed and small.
// Browser dashboards on any origin may read (GET, HEAD) — reads are public
// and carry no credentials — so those answers say
// Access-Control-Allow-Origin: *. Nothing else is allowed cross-origin:
// no credentials (never Access-Control-Allow-Credentials), no request
// headers beyond the simple ones (so no Authorization: a page cannot send
// an admin token), and a preflight for any other method gets no CORS
// headers, which the browser takes as a refusal.

// corsExposed are the response headers a dashboard may read.
const corsExposed = "Nii-Ref, Nii-Size, Nii-Manifest, Nii-Error, Retry-After"

func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isPreflight(r) {
			hd := w.Header()
			hd.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
			switch r.Header.Get("Access-Control-Request-Method") {
			case http.MethodGet, http.MethodHead:
				hd.Set("Access-Control-Allow-Origin", "*")
				hd.Set("Access-Control-Allow-Methods", "GET, HEAD")
				hd.Set("Access-Control-Allow-Headers", "Accept, Accept-Language, Content-Language, Content-Type")
				hd.Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			// The answer differs with and without Origin: tell caches.
			w.Header().Add("Vary", "Origin")
			if r.Header.Get("Origin") != "" {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header().Set("Access-Control-Expose-Headers", corsExposed)
			}
		}
		h.ServeHTTP(w, r)
	})
}
