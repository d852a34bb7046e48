package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nii-uk/nii"
)

// Pull and follow over the API (all admin):
//
//	POST   /api/v1/pull                      {"ref": "org/name[@N]", "grant": "…"} → NDJSON progress, then the result
//	GET    /api/v1/follows
//	POST   /api/v1/follows                   {"dataset": "org/name", "grant": "…"}
//	DELETE /api/v1/follows/{org}/{name}

// PullRequestBody is the body of POST /api/v1/pull.
type PullRequestBody struct {
	Ref   string `json:"ref"`
	Grant string `json:"grant,omitempty"`
}

// PullEvent is one line of the pull response stream: progress, then a
// final line with Result or Error.
type PullEvent struct {
	Done   int64        `json:"done"`
	Total  int64        `json:"total"`
	Result *PullSummary `json:"result,omitempty"`
	Error  *APIError    `json:"error,omitempty"`
}

// PullSummary reports a finished pull.
type PullSummary struct {
	Version       VersionInfo      `json:"version"`
	FetchedChunks int              `json:"fetched_chunks"`
	FetchedBytes  int64            `json:"fetched_bytes"`
	HeldChunks    int              `json:"held_chunks"`
	Providers     map[string]int64 `json:"providers"` // bytes per provider
	Dropped       []nii.NodeID     `json:"dropped,omitempty"`
}

func (n *Node) handlePull(w http.ResponseWriter, r *http.Request) {
	var body PullRequestBody
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
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	last := time.Time{}
	emit := func(ev PullEvent, force bool) {
		mu.Lock()
		defer mu.Unlock()
		if !force && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		enc.Encode(ev)
		if flusher != nil {
			flusher.Flush()
		}
	}
	res, err := n.Pull(r.Context(), ref, PullOptions{Grant: body.Grant, Progress: func(done, total int64) {
		emit(PullEvent{Done: done, Total: total}, false)
	}})
	if err != nil {
		_, code := errStatus(err)
		emit(PullEvent{Error: &APIError{Error: err.Error(), Code: code}}, true)
		return
	}
	sum := &PullSummary{
		Version: versionInfo(res.Record), FetchedChunks: res.FetchedChunks, FetchedBytes: res.FetchedBytes,
		HeldChunks: res.HeldChunks, Providers: map[string]int64{}, Dropped: res.Dropped,
	}
	for p, b := range res.Providers {
		sum.Providers[string(p)] = b
	}
	emit(PullEvent{Done: res.FetchedBytes, Total: res.FetchedBytes, Result: sum}, true)
}

// FollowBody is the body of POST /api/v1/follows.
type FollowBody struct {
	Dataset string `json:"dataset"`
	Grant   string `json:"grant,omitempty"`
}

func (n *Node) handleFollows(w http.ResponseWriter, r *http.Request) {
	fs, err := n.Follows()
	if err != nil {
		writeErr(w, err)
		return
	}
	if fs == nil {
		fs = []Follow{}
	}
	writeJSON(w, http.StatusOK, fs)
}

func (n *Node) handleFollow(w http.ResponseWriter, r *http.Request) {
	var body FollowBody
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		writeErr(w, fmt.Errorf("%w request body: %v", nii.ErrInvalid, err))
		return
	}
	d, err := nii.ParseDatasetID(body.Dataset)
	if err != nil {
		writeErr(w, err)
		return
	}
	f, err := n.StartFollowing(d, body.Grant)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (n *Node) handleUnfollow(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if err := n.StopFollowing(d); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"unfollowed": d.String()})
}
