package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node/api"
)

// Pull and follow over the API (all admin):
//
//	POST   /api/v1/pull                      {"ref": "org/name[@N]", "grant": "…"} → NDJSON progress, then the result
//	GET    /api/v1/follows
//	POST   /api/v1/follows                   {"dataset": "org/name", "grant": "…"}
//	DELETE /api/v1/follows/{org}/{name}

func (n *Node) handlePull(w http.ResponseWriter, r *http.Request) {
	var body api.PullRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		writeErr(w, fmt.Errorf("%w request body: %v", nii.ErrInvalid, err))
		return
	}
	ref, err := nii.ParseRef(body.Ref)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	// Heartbeats (below) keep the stream moving while the pull waits.
	sw := n.streaming(w)
	enc := json.NewEncoder(sw)
	flusher, _ := sw.(http.Flusher)
	var (
		mu   sync.Mutex
		last time.Time     // when a line was last written
		cur  api.PullEvent // the newest progress, written or not
	)
	emit := func(ev api.PullEvent, force bool) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Result == nil && ev.Error == nil {
			cur = ev
		}
		if !force && time.Since(last) < api.PullProgressEvery {
			return
		}
		last = time.Now()
		enc.Encode(ev)
		if flusher != nil {
			flusher.Flush()
		}
	}
	// A heartbeat: while the pull waits on providers (a manifest request
	// may take 30 s per provider), repeat the newest progress at least
	// every api.PullHeartbeat, so the client can tell a slow pull from a
	// dead node. It stops before the handler returns.
	stop := tick(api.PullHeartbeat/2, func() {
		mu.Lock()
		quiet, ev := time.Since(last) >= api.PullHeartbeat/2, cur
		mu.Unlock()
		if quiet {
			emit(ev, true)
		}
	})
	res, err := n.Pull(r.Context(), ref, PullOptions{Grant: body.Grant, AllowUnverified: body.AllowUnverified, Progress: func(done, total int64) {
		emit(api.PullEvent{Done: done, Total: total}, false)
	}})
	stop()
	if err != nil {
		_, body := api.ErrorFor(err)
		emit(api.PullEvent{Error: &body}, true)
		return
	}
	emit(api.PullEvent{Done: res.FetchedBytes, Total: res.FetchedBytes, Result: n.pullSummary(ref, res, body.AllowUnverified)}, true)
}

// pullSummary is what the API says of a finished pull of ref.
func (n *Node) pullSummary(ref nii.Ref, res *exchange.PullResult, allowUnverified bool) *api.PullSummary {
	sum := &api.PullSummary{
		Version: versionInfo(res.Record), FetchedChunks: res.FetchedChunks, FetchedBytes: res.FetchedBytes,
		HeldChunks: res.HeldChunks, Providers: map[string]int64{}, Dropped: res.Dropped,
		CopiedChunks: res.CopiedChunks,
	}
	if pub, err := n.publisher(ref.Dataset, PullOptions{AllowUnverified: allowUnverified}.sourceOptions()...); err == nil {
		sum.PublisherVerified = pub.Verified
	}
	for p, b := range res.Providers {
		sum.Providers[string(p)] = b
	}
	return sum
}

func (n *Node) handleFollows(w http.ResponseWriter, r *http.Request) {
	fs, err := n.Follows()
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]api.Follow, len(fs))
	for i := range fs {
		out[i] = *n.followInfo(&fs[i])
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleFollow(w http.ResponseWriter, r *http.Request) {
	var body api.FollowRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		writeErr(w, fmt.Errorf("%w request body: %v", nii.ErrInvalid, err))
		return
	}
	d, err := nii.ParseDatasetID(body.Dataset)
	if err != nil {
		writeErr(w, err)
		return
	}
	f, err := n.StartFollowingWith(d, FollowOptions{Grant: body.Grant, AllowUnverified: body.AllowUnverified})
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, n.followInfo(f))
}

func (n *Node) handleUnfollow(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	err = n.StopFollowing(d)
	if errors.Is(err, nii.ErrNotFound) {
		// Not a dataset followed: a merged dataset kept current, or a
		// standard whose merges are (nii follow STD --publish NAME).
		if _, werr := n.StopWatch(d); werr == nil {
			err = nil
		}
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.UnfollowResult{Unfollowed: d.String()})
}

// tick calls fn every d, on a goroutine of its own, until stop is
// called; stop returns once the goroutine has.
func tick(d time.Duration, fn func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}
