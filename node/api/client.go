package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nii-uk/nii"
)

// Client talks to a running node's local API. The nii CLI is built on it.
// Its zero value is not usable: make one with Dial, or set Base.
type Client struct {
	Base  string // e.g. http://127.0.0.1:7947
	Token string // admin token; empty for read-only use
	// Home, if set, is the node's home: when the node does not answer, the
	// client looks there for why (Dial sets it).
	Home string
	// HTTP is the HTTP client; nil uses http.DefaultClient. Its own
	// Timeout should be zero: the deadlines below are per call.
	HTTP *http.Client
	// Timeout bounds each call that is not a stream: the request, the
	// node's work and reading the answer. 0 means DefaultTimeout.
	Timeout time.Duration
	// Stall bounds the silence in a stream (a publish's upload, an
	// export's download, a pull's progress): a stream may take as long as
	// it needs while bytes or progress keep coming. 0 means DefaultStall.
	Stall time.Duration
}

// Client defaults.
const (
	DefaultTimeout = 30 * time.Second
	DefaultStall   = 2 * time.Minute // well above PullHeartbeat and a provider's 30 s request deadline
)

// errTimeout and errStalled are the causes a call's context is cancelled
// with when its deadline passes.
var (
	errTimeout = nii.Errorf(nii.ErrUnavailable, "no answer in time")
	errStalled = nii.Errorf(nii.ErrUnavailable, "the stream stalled")
)

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// call returns the context of a non-streaming call: ctx with the client's
// timeout.
func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.Timeout
	if d <= 0 {
		d = DefaultTimeout
	}
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("%w: the node did not answer within %v", errTimeout, d))
}

// stream returns the context of a streaming call and a function to call
// whenever the stream makes progress: ctx is cancelled if progress stops
// for the client's stall deadline.
func (c *Client) stream(ctx context.Context) (context.Context, func(), context.CancelFunc) {
	d := c.Stall
	if d <= 0 {
		d = DefaultStall
	}
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(d, func() {
		cancel(fmt.Errorf("%w: no progress for %v", errStalled, d))
	})
	return ctx, func() { t.Reset(d) }, func() { t.Stop(); cancel(nil) }
}

// do makes one request. An error status comes back as a *RemoteError; a
// node that cannot be reached as ErrNotRunning, saying why where the home
// tells.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, admin bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if admin {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e APIError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e = APIError{Error: fmt.Sprintf("%s %s: %s", method, path, resp.Status), Code: codeForStatus(resp.StatusCode)}
		}
		return nil, &RemoteError{Status: resp.StatusCode, APIError: e}
	}
	return resp, nil
}

// transportError explains a failure to get an answer at all.
func (c *Client) transportError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && (errors.Is(cause, errTimeout) || errors.Is(cause, errStalled)) {
		return fmt.Errorf("node at %s: %w", c.Base, cause)
	}
	if ctx.Err() != nil {
		return ctx.Err() // the caller gave up
	}
	if why := diagnose(c.Home); why != "" {
		return fmt.Errorf("%w at %s: %s; start it with 'nii run --home %s'", ErrNotRunning, c.Base, why, c.Home)
	}
	return fmt.Errorf("%w at %s (%v): is 'nii run' still up?", ErrNotRunning, c.Base, err)
}

// readError explains a failure while reading an answer.
func (c *Client) readError(ctx context.Context, what string, err error) error {
	if cause := context.Cause(ctx); cause != nil && (errors.Is(cause, errTimeout) || errors.Is(cause, errStalled)) {
		return fmt.Errorf("%s: node at %s: %w", what, c.Base, cause)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// send makes one non-streaming call and decodes a JSON answer into out
// (if not nil).
func (c *Client) send(ctx context.Context, method, path string, body []byte, admin bool, out any) error {
	ctx, cancel := c.call(ctx)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	resp, err := c.do(ctx, method, path, r, admin)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return c.readError(ctx, method+" "+path, err)
	}
	return nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.send(ctx, http.MethodGet, path, nil, false, out)
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.get(ctx, "/api/v1/status", &s)
}

// Datasets lists the datasets the node holds and follows.
func (c *Client) Datasets(ctx context.Context) ([]DatasetInfo, error) {
	var ds []DatasetInfo
	return ds, c.get(ctx, "/api/v1/datasets", &ds)
}

// Dataset describes one dataset the node holds and its versions.
func (c *Client) Dataset(ctx context.Context, d nii.DatasetID) (*DatasetInfo, error) {
	var info DatasetInfo
	return &info, c.get(ctx, "/api/v1/datasets/"+d.String(), &info)
}

// VersionPath is the API path of a version (Version 0: the latest).
func VersionPath(r nii.Ref) string {
	v := "latest"
	if r.Version != 0 {
		v = strconv.FormatUint(r.Version, 10)
	}
	return "/api/v1/datasets/" + r.Dataset.String() + "/versions/" + v
}

// Version describes one stored version (Version 0: the latest).
func (c *Client) Version(ctx context.Context, r nii.Ref) (*VersionInfo, error) {
	var v VersionInfo
	return &v, c.get(ctx, VersionPath(r), &v)
}

// progressReader calls touch on every read that returns bytes.
type progressReader struct {
	r     io.Reader
	touch func()
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.touch()
	}
	return n, err
}

// streamBuf is the size of the reads and writes a publish upload and an
// export download make (io.Copy's own is 32 KiB: a system call, and an
// HTTP chunk, every 32 KiB).
const streamBuf = 1 << 20

// WriteTo copies to w in writes of up to streamBuf, so that io.Copy (in
// net/http's request writer, and in Content) moves large blocks.
func (p progressReader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, streamBuf)
	var n int64
	for {
		k, err := p.r.Read(buf)
		if k > 0 {
			p.touch()
			m, werr := w.Write(buf[:k])
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Publish uploads body as the next version of d (whose org must be the
// node's). The upload may take as long as it needs while bytes flow.
func (c *Client) Publish(ctx context.Context, d nii.DatasetID, body io.Reader, o PublishOptions) (*VersionInfo, error) {
	ctx, touch, stop := c.stream(ctx)
	defer stop()
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/datasets/"+d.String()+"/versions?"+o.Query().Encode(), progressReader{body, touch}, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v VersionInfo
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, c.readError(ctx, "publish "+d.String(), err)
	}
	return &v, nil
}

// Content streams a version's verified bytes to w and returns the version
// written and its size. An error in mid-stream (a corrupt chunk, say) is
// reported, so the caller must discard what w received.
func (c *Client) Content(ctx context.Context, r nii.Ref, w io.Writer) (string, int64, error) {
	ctx, touch, stop := c.stream(ctx)
	defer stop()
	// With the admin token when the client has it: restricted content is
	// served only to the node's operator.
	resp, err := c.do(ctx, http.MethodGet, VersionPath(r)+"/content", nil, c.Token != "")
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	ref := resp.Header.Get(HeaderRef)
	want, _ := strconv.ParseInt(resp.Header.Get(HeaderSize), 10, 64)
	n, err := io.Copy(w, progressReader{resp.Body, touch})
	if err != nil {
		return ref, n, c.readError(ctx, "export "+ref, err)
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
	return &r, c.get(ctx, "/api/v1/catalog?"+q.Encode(), &r)
}

// CatalogDataset returns what the federation knows of a dataset.
func (c *Client) CatalogDataset(ctx context.Context, d nii.DatasetID) (*CatalogDataset, error) {
	var cd CatalogDataset
	return &cd, c.get(ctx, "/api/v1/catalog/"+d.String(), &cd)
}

// CatalogDatasetUnverified is CatalogDataset that, on a node with trust
// anchors, also answers with an unverified only claim (verified=false).
func (c *Client) CatalogDatasetUnverified(ctx context.Context, d nii.DatasetID) (*CatalogDataset, error) {
	var cd CatalogDataset
	return &cd, c.get(ctx, "/api/v1/catalog/"+d.String()+"?verified=false", &cd)
}

// Peers lists the federation's members as the node knows them.
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	var ps []PeerInfo
	return ps, c.get(ctx, "/api/v1/peers", &ps)
}

// Withdraw tombstones one of the node's datasets.
func (c *Client) Withdraw(ctx context.Context, d nii.DatasetID) error {
	return c.send(ctx, http.MethodPost, "/api/v1/datasets/"+d.String()+"/withdraw", nil, true, &WithdrawResult{})
}

// Pull asks the node to pull a version; progress (if set) is called as
// chunks arrive. The pull may take as long as it needs while the node
// reports progress (it does at least every PullHeartbeat).
func (c *Client) Pull(ctx context.Context, ref nii.Ref, grant string, progress func(done, total int64)) (*PullSummary, error) {
	return c.PullWith(ctx, PullRequest{Ref: ref.String(), Grant: grant}, progress)
}

// PullWith is Pull with every option of the request.
func (c *Client) PullWith(ctx context.Context, req PullRequest, progress func(done, total int64)) (*PullSummary, error) {
	var res *PullSummary
	return res, c.postEvents(ctx, "/api/v1/pull", req, "pull "+req.Ref, func(dec *json.Decoder) (bool, error) {
		var ev PullEvent
		if err := dec.Decode(&ev); err != nil {
			return false, err
		}
		switch {
		case ev.Error != nil:
			return true, &RemoteError{Status: http.StatusOK, APIError: *ev.Error}
		case ev.Result != nil:
			if progress != nil {
				progress(ev.Total, ev.Total)
			}
			res = ev.Result
			return true, nil
		case progress != nil:
			progress(ev.Done, ev.Total)
		}
		return false, nil
	})
}

// postEvents posts req to path and reads the node's answer, a stream of
// JSON events with heartbeats between them, calling next to decode and
// handle each until it says the stream is done. A stream that stalls
// (no event within the client's stall deadline) or breaks is named by
// what.
func (c *Client) postEvents(ctx context.Context, path string, req any, what string, next func(*json.Decoder) (done bool, err error)) error {
	ctx, touch, stop := c.stream(ctx)
	defer stop()
	b, _ := json.Marshal(req)
	resp, err := c.do(ctx, http.MethodPost, path, bytes.NewReader(b), true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		done, err := next(dec)
		var remote *RemoteError
		switch {
		case errors.As(err, &remote):
			return err
		case err != nil:
			if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
				return fmt.Errorf("%s: node at %s: %w", what, c.Base, cause)
			}
			return fmt.Errorf("%s: the node stopped answering: %w", what, err)
		case done:
			return nil
		}
		touch()
	}
}

// Follows lists the node's subscriptions.
func (c *Client) Follows(ctx context.Context) ([]Follow, error) {
	var fs []Follow
	return fs, c.get(ctx, "/api/v1/follows", &fs)
}

// Follow subscribes the node to a dataset.
func (c *Client) Follow(ctx context.Context, d nii.DatasetID, grant string) (*Follow, error) {
	return c.FollowWith(ctx, FollowRequest{Dataset: d.String(), Grant: grant})
}

// FollowWith is Follow with every option of the request.
func (c *Client) FollowWith(ctx context.Context, req FollowRequest) (*Follow, error) {
	b, _ := json.Marshal(req)
	var f Follow
	return &f, c.send(ctx, http.MethodPost, "/api/v1/follows", b, true, &f)
}

// Unfollow removes a subscription.
func (c *Client) Unfollow(ctx context.Context, d nii.DatasetID) error {
	return c.send(ctx, http.MethodDelete, "/api/v1/follows/"+d.String(), nil, true, &UnfollowResult{})
}

// Trust lists the issuer keys the node trusts.
func (c *Client) Trust(ctx context.Context) ([]TrustInfo, error) {
	var out []TrustInfo
	return out, c.get(ctx, "/api/v1/trust", &out)
}

// AddTrust makes the node trust the public key in key (a JWK or PEM).
func (c *Client) AddTrust(ctx context.Context, key []byte, name string) (*TrustInfo, error) {
	var out TrustInfo
	return &out, c.send(ctx, http.MethodPost, "/api/v1/trust?name="+url.QueryEscape(name), key, true, &out)
}

// RemoveTrust stops the node trusting the key with ID kid.
func (c *Client) RemoveTrust(ctx context.Context, kid string) error {
	return c.send(ctx, http.MethodDelete, "/api/v1/trust/"+url.PathEscape(kid), nil, true, nil)
}

// Credential returns the node's membership credential.
func (c *Client) Credential(ctx context.Context) (*CredentialInfo, error) {
	var out CredentialInfo
	return &out, c.get(ctx, "/api/v1/credential", &out)
}

// InstallCredential gives the node its membership credential.
func (c *Client) InstallCredential(ctx context.Context, token string) (*CredentialInfo, error) {
	var out CredentialInfo
	return &out, c.send(ctx, http.MethodPut, "/api/v1/credential", []byte(token), true, &out)
}

// Revocations lists the revocations the node holds.
func (c *Client) Revocations(ctx context.Context) ([]Revocation, error) {
	var out []Revocation
	return out, c.get(ctx, "/api/v1/revocations", &out)
}

// Revoke hands the node a revocation to keep and spread.
func (c *Client) Revoke(ctx context.Context, token string) (*RevokeResult, error) {
	var out RevokeResult
	return &out, c.send(ctx, http.MethodPost, "/api/v1/revocations", []byte(token), true, &out)
}

// Inspect asks the node how it would judge a token.
func (c *Client) Inspect(ctx context.Context, body InspectRequest) (*TokenReport, error) {
	b, _ := json.Marshal(body)
	var out TokenReport
	return &out, c.send(ctx, http.MethodPost, "/api/v1/grants/inspect", b, false, &out)
}

// Audit returns a page of the node's audit log; q holds the query
// parameters GET /api/v1/audit takes (after, limit, order, dataset, node,
// result).
func (c *Client) Audit(ctx context.Context, q url.Values) (*AuditPage, error) {
	var out AuditPage
	return &out, c.send(ctx, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil, true, &out)
}

// VerifyStore runs the node's store check now: every chunk of every
// version re-read and hashed, damaged versions withdrawn and repaired where
// another provider has them. It takes as long as reading the store; set
// Timeout to match.
func (c *Client) VerifyStore(ctx context.Context) (*StoreVerifyResult, error) {
	var res StoreVerifyResult
	return &res, c.send(ctx, http.MethodPost, "/api/v1/store/verify", nil, true, &res)
}

// CollectGarbage deletes the chunks no version names, now, and reports
// what it reclaimed.
func (c *Client) CollectGarbage(ctx context.Context) (*StoreGCResult, error) {
	var res StoreGCResult
	return &res, c.send(ctx, http.MethodPost, "/api/v1/store/gc", nil, true, &res)
}
