package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nii-uk/nii"
)

// Client talks to a running node's local API. The CLI is built on it.
type Client struct {
	Base  string // e.g. http://127.0.0.1:7947
	Token string // admin token; empty for read-only use
	HTTP  *http.Client
}

// ErrNotRunning is returned by Dial when no daemon serves the home.
var ErrNotRunning = errors.New("no running node")

// Dial finds the daemon running in home from the address and token it
// wrote there.
func Dial(home string) (*Client, error) {
	if _, err := os.Stat(filepath.Join(home, ConfigFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: run 'nii init --org ORG' first, or pass --home", ErrNoHome, home)
	}
	b, err := os.ReadFile(filepath.Join(home, APIFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w for home %s: start it with 'nii run --home %s'", ErrNotRunning, home, home)
	}
	if err != nil {
		return nil, err
	}
	c := &Client{Base: strings.TrimSpace(string(b)), HTTP: &http.Client{}}
	if tok, err := os.ReadFile(filepath.Join(home, TokenFile)); err == nil {
		c.Token = strings.TrimSpace(string(tok))
	}
	return c, nil
}

// RemoteError is an error response from the API.
type RemoteError struct {
	Status int
	APIError
}

func (e *RemoteError) Error() string { return e.APIError.Error }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, admin bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if admin {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s (%v): is 'nii run' still up?", ErrNotRunning, c.Base, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e APIError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e = APIError{Error: fmt.Sprintf("%s %s: %s", method, path, resp.Status), Code: "internal"}
		}
		return nil, &RemoteError{Status: resp.StatusCode, APIError: e}
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, false)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.getJSON(ctx, "/api/v1/status", &s)
}

// Datasets lists the datasets the node holds.
func (c *Client) Datasets(ctx context.Context) ([]DatasetInfo, error) {
	var ds []DatasetInfo
	return ds, c.getJSON(ctx, "/api/v1/datasets", &ds)
}

// Dataset describes one dataset and its versions.
func (c *Client) Dataset(ctx context.Context, d nii.DatasetID) (*DatasetInfo, error) {
	var info DatasetInfo
	return &info, c.getJSON(ctx, "/api/v1/datasets/"+d.String(), &info)
}

func versionPath(r nii.Ref) string {
	v := "latest"
	if r.Version != 0 {
		v = strconv.FormatUint(r.Version, 10)
	}
	return "/api/v1/datasets/" + r.Dataset.String() + "/versions/" + v
}

// Version describes one version (Version 0: the latest).
func (c *Client) Version(ctx context.Context, r nii.Ref) (*VersionInfo, error) {
	var v VersionInfo
	return &v, c.getJSON(ctx, versionPath(r), &v)
}

// Publish uploads body as the next version of org/name.
func (c *Client) Publish(ctx context.Context, d nii.DatasetID, body io.Reader, req PublishRequest) (*VersionInfo, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("filename", req.Filename)
	set("title", req.Meta.Title)
	set("description", req.Meta.Description)
	set("licence", req.Meta.Licence)
	set("access", string(req.Meta.Access))
	set("conforms_to", req.Meta.ConformsTo)
	set("media_type", req.Meta.MediaType)
	q["keyword"] = req.Meta.Keywords
	q["theme"] = req.Meta.Themes
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/datasets/"+d.String()+"/versions?"+q.Encode(), body, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v VersionInfo
	return &v, json.NewDecoder(resp.Body).Decode(&v)
}

// Content streams a version's verified bytes to w. It returns the version
// written. An error in mid-stream (a corrupt chunk, say) is reported, so
// the caller must discard what w received.
func (c *Client) Content(ctx context.Context, r nii.Ref, w io.Writer) (string, int64, error) {
	// With the admin token when the CLI has it: restricted content is
	// served only to the node's operator.
	resp, err := c.do(ctx, http.MethodGet, versionPath(r)+"/content", nil, c.Token != "")
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	ref := resp.Header.Get("Nii-Ref")
	want, _ := strconv.ParseInt(resp.Header.Get("Nii-Size"), 10, 64)
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return ref, n, fmt.Errorf("export %s: %w", ref, err)
	}
	if msg := resp.Trailer.Get(TrailerError); msg != "" {
		return ref, n, fmt.Errorf("export %s: %s", ref, msg)
	}
	if n != want {
		return ref, n, fmt.Errorf("export %s: got %d bytes, want %d", ref, n, want)
	}
	return ref, n, nil
}

// Search queries the federated catalog; q holds URL query parameters as
// GET /api/v1/catalog takes them.
func (c *Client) Search(ctx context.Context, q url.Values) (*CatalogResult, error) {
	var r CatalogResult
	return &r, c.getJSON(ctx, "/api/v1/catalog?"+q.Encode(), &r)
}

// CatalogDataset returns what the federation knows of a dataset.
func (c *Client) CatalogDataset(ctx context.Context, d nii.DatasetID) (*CatalogDataset, error) {
	var cd CatalogDataset
	return &cd, c.getJSON(ctx, "/api/v1/catalog/"+d.String(), &cd)
}

// Peers lists the federation's members as this node knows them.
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	var ps []PeerInfo
	return ps, c.getJSON(ctx, "/api/v1/peers", &ps)
}

// Withdraw tombstones one of the node's datasets.
func (c *Client) Withdraw(ctx context.Context, d nii.DatasetID) error {
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/datasets/"+d.String()+"/withdraw", nil, true)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Pull asks the node to pull a version; progress (if set) is called as
// chunks arrive.
func (c *Client) Pull(ctx context.Context, ref nii.Ref, grant string, progress func(done, total int64)) (*PullSummary, error) {
	b, _ := json.Marshal(PullRequestBody{Ref: ref.String(), Grant: grant})
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/pull", strings.NewReader(string(b)), true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev PullEvent
		if err := dec.Decode(&ev); err != nil {
			return nil, fmt.Errorf("pull %s: the node stopped answering: %w", ref, err)
		}
		switch {
		case ev.Error != nil:
			return nil, &RemoteError{Status: http.StatusOK, APIError: *ev.Error}
		case ev.Result != nil:
			if progress != nil {
				progress(ev.Total, ev.Total)
			}
			return ev.Result, nil
		case progress != nil:
			progress(ev.Done, ev.Total)
		}
	}
}

// Follow subscribes the node to a dataset.
func (c *Client) Follow(ctx context.Context, d nii.DatasetID, grant string) (*Follow, error) {
	b, _ := json.Marshal(FollowBody{Dataset: d.String(), Grant: grant})
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/follows", strings.NewReader(string(b)), true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var f Follow
	return &f, json.NewDecoder(resp.Body).Decode(&f)
}

// Unfollow removes a subscription.
func (c *Client) Unfollow(ctx context.Context, d nii.DatasetID) error {
	resp, err := c.do(ctx, http.MethodDelete, "/api/v1/follows/"+d.String(), nil, true)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
