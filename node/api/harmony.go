package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nii-uk/nii"
)

// The harmonisation routes' types: standards, mappings, merges, watches
// and lineage (docs/api.md, "Standards, mappings and merges").

// Mapping choices: which mapping a node applies to a source.
const (
	ChoicePublisher  = "publisher"  // the dataset's publisher's own mapping
	ChoiceHarmoniser = "harmoniser" // a trusted harmoniser's mapping
	ChoiceIdentity   = "identity"   // none needed: the dataset conforms directly
	ChoiceNone       = "none"       // no usable mapping: not merged
)

// MappingInfo is one mapping the catalog lists.
type MappingInfo struct {
	Ref       string     `json:"ref"` // org/name@N of the mapping dataset
	Manifest  nii.Hash   `json:"manifest"`
	Org       string     `json:"org"`      // who published it
	Standard  string     `json:"standard"` // the standard (and version) it maps to
	AppliesTo []string   `json:"applies_to"`
	Publisher nii.NodeID `json:"publisher_node"`
	Verified  bool       `json:"verified"`
	Modified  time.Time  `json:"modified"`
	Chosen    bool       `json:"chosen"` // the one this node applies
}

// StandardSource is a dataset that conforms to a standard or has a mapping
// to it, and the mapping this node applies.
type StandardSource struct {
	Dataset  string     `json:"dataset"`
	Version  uint64     `json:"version"`
	Manifest nii.Hash   `json:"manifest"`
	Access   nii.Access `json:"access"`
	Conforms bool       `json:"conforms"` // its metadata's conforms_to names the standard
	// Choice is one of the Choice constants; Why says why in words.
	Choice   string        `json:"choice"`
	Why      string        `json:"why"`
	Mapping  *MappingInfo  `json:"mapping,omitempty"` // the chosen mapping, if any
	Mappings []MappingInfo `json:"mappings,omitempty"`
}

// StandardInfo is a standard the federation knows (GET /api/v1/standards).
type StandardInfo struct {
	Ref       string           `json:"ref"` // org/name@N, the newest version
	Manifest  nii.Hash         `json:"manifest"`
	Title     string           `json:"title"`
	Publisher nii.NodeID       `json:"publisher_node"`
	Verified  bool             `json:"verified"`
	Sources   []StandardSource `json:"sources"`
	Mappings  int              `json:"mappings"` // mapping datasets for it
	// Watches are this node's merged datasets kept current from it.
	Watches []WatchInfo `json:"watches,omitempty"`
}

// StandardField is one field of a standard.
type StandardField struct {
	Name        string   `json:"name"`
	Title       string   `json:"title,omitempty"`
	Type        string   `json:"type"`
	Format      string   `json:"format,omitempty"`
	Role        string   `json:"role,omitempty"` // nii:role: date, amount, supplier
	Required    bool     `json:"required,omitempty"`
	Enum        []string `json:"enum,omitempty"`
	Description string   `json:"description,omitempty"`
}

// StandardDetail is GET /api/v1/standards/{org}/{name}: the standard's
// fields, who conforms, and its fitness from a merge.
type StandardDetail struct {
	StandardInfo
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Fields      []StandardField `json:"fields"`
	// Fitness is from a merge this node made just now (cached partitions
	// make it cheap); nil on a registry-only node, with FitnessNote saying
	// why.
	Fitness     *Fitness `json:"fitness,omitempty"`
	FitnessNote string   `json:"fitness_note,omitempty"`
}

// RuleCount counts the rows that broke one rule on one field.
type RuleCount struct {
	Rule     string   `json:"rule"`
	Field    string   `json:"field,omitempty"`
	Rows     int64    `json:"rows"`
	Lines    []int64  `json:"lines"`    // the first source lines that broke it
	Examples []string `json:"examples"` // the first reasons, with values
}

// CheckReport is what applying a mapping to a version found
// (POST /api/v1/map/check).
type CheckReport struct {
	Ref          string      `json:"ref"` // the version checked
	Mapping      nii.Hash    `json:"mapping_hash"`
	Standard     string      `json:"standard"`
	HeaderRecord int         `json:"header_record"`
	HeaderLine   int64       `json:"header_line"`
	Preamble     int         `json:"preamble"`
	Header       []string    `json:"header"`
	DataRows     int64       `json:"data_rows"`
	Accepted     int64       `json:"accepted"`
	Rejected     int64       `json:"rejected"`
	Blank        int64       `json:"blank"`
	Footer       int64       `json:"footer"`
	Repaired     int64       `json:"repaired"`
	Failures     []RuleCount `json:"failures,omitempty"`
	Warnings     []string    `json:"warnings,omitempty"`
}

// SuggestRequest is the body of POST /api/v1/map/suggest.
type SuggestRequest struct {
	Ref      string `json:"ref"`      // org/name[@N]: the version to read (pulled if not held)
	Standard string `json:"standard"` // org/name[@N]
	Grant    string `json:"grant,omitempty"`
}

// FieldSuggestion is one field a suggestion mapped.
type FieldSuggestion struct {
	Field    string  `json:"field"`
	Column   string  `json:"column,omitempty"`
	Const    string  `json:"const,omitempty"`
	Score    float64 `json:"score"`
	Coercion string  `json:"coercion,omitempty"`
}

// Suggestion is a proposed mapping (POST /api/v1/map/suggest).
type Suggestion struct {
	Ref      string            `json:"ref"`
	Standard string            `json:"standard"`
	TOML     string            `json:"toml"`
	Fields   []FieldSuggestion `json:"fields"`
	Unmapped []string          `json:"unmapped"`
	Unused   []string          `json:"unused"`
}

// CheckRequest is the body of POST /api/v1/map/check.
type CheckRequest struct {
	Ref     string `json:"ref"`     // org/name[@N]
	Mapping string `json:"mapping"` // the mapping's TOML
	Grant   string `json:"grant,omitempty"`
}

// MappingPublishRequest is the body of POST /api/v1/mappings.
type MappingPublishRequest struct {
	Dataset string `json:"dataset"` // org/name the mapping is for (it must be among its applies_to)
	Mapping string `json:"mapping"` // the TOML
	Name    string `json:"name,omitempty"`
	Title   string `json:"title,omitempty"`
	Licence string `json:"licence,omitempty"`
}

// MappingPublished is what POST /api/v1/mappings returns.
type MappingPublished struct {
	Version VersionInfo `json:"version"`
	// Check is the mapping applied to the dataset's newest version, when
	// this node could read it.
	Check     *CheckReport `json:"check,omitempty"`
	CheckNote string       `json:"check_note,omitempty"` // why it was not checked
}

// MergeRequest is the body of POST /api/v1/merge.
type MergeRequest struct {
	Standard     string   `json:"standard"` // org/name[@N]
	AllowPartial bool     `json:"allow_partial,omitempty"`
	Grants       []string `json:"grants,omitempty"`
	// Publish, if set, is the name (this node's org) to publish the
	// merged table as.
	Publish string `json:"publish,omitempty"`
	Title   string `json:"title,omitempty"`
	// Watch keeps Publish current (needs Publish).
	Watch bool `json:"watch,omitempty"`
}

// MergeColumn is a column of a merged table, typed as in Table Schema.
type MergeColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// MergeSource is one source of a merge.
type MergeSource struct {
	Dataset   string   `json:"dataset"`
	Version   uint64   `json:"version"`
	Manifest  nii.Hash `json:"manifest"`
	Choice    string   `json:"choice"`
	Why       string   `json:"why"`
	Mapping   string   `json:"mapping,omitempty"` // org/name@N of the mapping applied, "" for the identity mapping
	MappingID nii.Hash `json:"mapping_id"`        // what its rows cite (the mapping's manifest hash)
	DataRows  int64    `json:"data_rows"`
	Accepted  int64    `json:"accepted"`
	Rejected  int64    `json:"rejected"`
	FromCache bool     `json:"from_cache"`
}

// MissingSource is a source a merge could not use.
type MissingSource struct {
	Dataset string `json:"dataset"`
	Version uint64 `json:"version,omitempty"`
	Reason  string `json:"reason"`
}

// MergeResult is a finished merge.
type MergeResult struct {
	ID               string          `json:"id"` // for GET /api/v1/merges/{id}/table
	Standard         string          `json:"standard"`
	StandardManifest nii.Hash        `json:"standard_manifest"`
	Columns          []MergeColumn   `json:"columns"`
	Sources          []MergeSource   `json:"sources"`
	Missing          []MissingSource `json:"missing,omitempty"`
	Skipped          []MissingSource `json:"skipped,omitempty"` // datasets with only untrusted mappings
	Rows             int64           `json:"rows"`
	Rejected         int64           `json:"rejected"`
	Remapped         int             `json:"remapped"` // sources mapped now; the rest came from the cache
	Took             string          `json:"took"`
	Published        *VersionInfo    `json:"published,omitempty"`
	Unchanged        bool            `json:"unchanged,omitempty"` // published is an earlier version: nothing changed
	Watch            *WatchInfo      `json:"watch,omitempty"`
}

// MergeEvent is one line of POST /api/v1/merge's stream: a heartbeat
// (empty) at least every PullHeartbeat while the merge runs, then a final
// line with Result or Error.
type MergeEvent struct {
	Result *MergeResult `json:"result,omitempty"`
	Error  *APIError    `json:"error,omitempty"`
}

// Merged table formats (GET /api/v1/merges/{id}/table?format=): FormatCSV
// (query.go) and these.
const (
	FormatNDJSON  = "ndjson"
	FormatParquet = "parquet"
)

// Watch states.
const (
	WatchCurrent = "current" // the published version is built from the catalog's newest inputs
	WatchMerging = "merging"
	WatchWaiting = "waiting" // the last merge failed; retrying with backoff
)

// WatchRequest is the body of POST /api/v1/watches.
type WatchRequest struct {
	Standard     string   `json:"standard"` // org/name (the newest version) or org/name@N
	Publish      string   `json:"publish"`  // the merged dataset's name (this node's org)
	Title        string   `json:"title,omitempty"`
	AllowPartial bool     `json:"allow_partial,omitempty"`
	Grants       []string `json:"grants,omitempty"`
}

// WatchInfo is a merged dataset the node keeps current.
type WatchInfo struct {
	Publish      string    `json:"publish"` // org/name
	Standard     string    `json:"standard"`
	State        string    `json:"state"`
	LastError    string    `json:"last_error,omitempty"`
	Version      uint64    `json:"version,omitempty"` // newest version published
	Since        time.Time `json:"since"`
	LastMerge    time.Time `json:"last_merge,omitzero"`
	Sources      int       `json:"sources"`
	Remapped     int       `json:"remapped"` // sources re-mapped by the last merge
	Missing      int       `json:"missing,omitempty"`
	Merges       int       `json:"merges"`
	AllowPartial bool      `json:"allow_partial,omitempty"`
	HasGrants    bool      `json:"has_grants,omitempty"`
	NextAttempt  time.Time `json:"next_attempt,omitzero"`
}

// UnwatchResult is what DELETE /api/v1/watches/{org}/{name} returns.
type UnwatchResult struct {
	Stopped []string `json:"stopped"`
}

// Fitness is a merge's fitness at a glance.
type Fitness struct {
	Sources  []SourceFitness `json:"sources"`
	Coverage []CoverageCell  `json:"coverage"`
	Missing  []MissingSource `json:"missing,omitempty"`
}

// SourceFitness is one source's validation score.
type SourceFitness struct {
	Dataset     string      `json:"dataset"`
	Version     uint64      `json:"version"`
	DataRows    int64       `json:"data_rows"`
	Accepted    int64       `json:"accepted"`
	Rejected    int64       `json:"rejected"`
	Score       float64     `json:"score"` // accepted / data rows
	TopFailures []RuleCount `json:"top_failures,omitempty"`
}

// CoverageCell is one publisher's rows in one month.
type CoverageCell struct {
	Publisher  string  `json:"publisher"`
	Month      string  `json:"month"` // yyyy-mm; "" when the date could not be read
	Rows       int64   `json:"rows"`
	Rejected   int64   `json:"rejected"`
	Amount     string  `json:"amount"` // exact decimal, accepted rows
	RejectRate float64 `json:"reject_rate"`
}

// Lineage check statuses.
const (
	LineageOK          = "ok"       // fetched, signed by the publisher, hashes to the cite
	LineageMismatch    = "mismatch" // the publisher's manifest for that version is another: the cite is not what was published
	LineageBadSig      = "bad_signature"
	LineageWrongSigner = "wrong_signer" // signed, but not by the node the catalog takes for the publisher
	LineageUnreachable = "unreachable"  // no provider answered
	LineageRefused     = "refused"      // restricted: a grant is needed to see the manifest
	LineageUnlisted    = "unlisted"     // the catalog does not list the dataset
)

// CiteCheck is one cited manifest, fetched and checked.
type CiteCheck struct {
	Ref      string     `json:"ref"`      // org/name@N
	Manifest nii.Hash   `json:"manifest"` // as cited
	Status   string     `json:"status"`   // one of the Lineage statuses
	Detail   string     `json:"detail,omitempty"`
	Signer   nii.NodeID `json:"signer,omitempty"` // who signed the manifest fetched
	Org      string     `json:"org,omitempty"`    // its org, verified by the catalog, if it is
	Held     bool       `json:"held,omitempty"`   // checked from this node's store
}

// LineageInput is one source of a merged version, each cite checked.
type LineageInput struct {
	Source      CiteCheck  `json:"source"`
	Mapping     *CiteCheck `json:"mapping,omitempty"` // nil: the identity mapping
	MappingHash nii.Hash   `json:"mapping_hash"`
	Partition   nii.Hash   `json:"partition"`
	Accepted    int64      `json:"accepted"`
	Rejected    int64      `json:"rejected"`
}

// LineageReport is GET /api/v1/datasets/{org}/{name}/versions/{version}/lineage:
// a merged version's lineage with every cited manifest fetched and its
// signature and hash checked.
type LineageReport struct {
	Merged   CiteCheck       `json:"merged"` // the merged version's own manifest
	Standard CiteCheck       `json:"standard"`
	Inputs   []LineageInput  `json:"inputs"`
	Missing  []MissingSource `json:"missing,omitempty"`
	// OK is true when every cite checked out; Problems counts those that
	// did not.
	OK       bool `json:"ok"`
	Problems int  `json:"problems"`
}

// Standards lists the standards the federation knows.
func (c *Client) Standards(ctx context.Context) ([]StandardInfo, error) {
	var out []StandardInfo
	return out, c.get(ctx, "/api/v1/standards", &out)
}

// Standard describes one standard: fields, sources, fitness. It may merge,
// so it runs as long as the node keeps answering.
func (c *Client) Standard(ctx context.Context, std nii.Ref) (*StandardDetail, error) {
	q := url.Values{}
	if std.Version != 0 {
		q.Set("version", strconv.FormatUint(std.Version, 10))
	}
	var out StandardDetail
	return &out, c.sendLong(ctx, http.MethodGet, "/api/v1/standards/"+std.Dataset.String()+"?"+q.Encode(), nil, c.Token != "", &out)
}

// Suggest asks the node to propose a mapping of a version to a standard.
func (c *Client) Suggest(ctx context.Context, req SuggestRequest) (*Suggestion, error) {
	b, _ := json.Marshal(req)
	var out Suggestion
	return &out, c.sendLong(ctx, http.MethodPost, "/api/v1/map/suggest", b, true, &out)
}

// Check asks the node to apply a mapping to a version and report.
func (c *Client) Check(ctx context.Context, req CheckRequest) (*CheckReport, error) {
	b, _ := json.Marshal(req)
	var out CheckReport
	return &out, c.sendLong(ctx, http.MethodPost, "/api/v1/map/check", b, true, &out)
}

// PublishMapping publishes a mapping as a signed dataset.
func (c *Client) PublishMapping(ctx context.Context, req MappingPublishRequest) (*MappingPublished, error) {
	b, _ := json.Marshal(req)
	var out MappingPublished
	return &out, c.sendLong(ctx, http.MethodPost, "/api/v1/mappings", b, true, &out)
}

// Merge asks the node to merge a standard. It may take as long as it
// needs while the node keeps sending its heartbeat.
func (c *Client) Merge(ctx context.Context, req MergeRequest) (*MergeResult, error) {
	var res *MergeResult
	return res, c.postEvents(ctx, "/api/v1/merge", req, "merge "+req.Standard, func(dec *json.Decoder) (bool, error) {
		var ev MergeEvent
		if err := dec.Decode(&ev); err != nil {
			return false, err
		}
		if ev.Error != nil {
			return true, &RemoteError{Status: http.StatusOK, APIError: *ev.Error}
		}
		res = ev.Result
		return res != nil, nil
	})
}

// MergeTable streams a kept merge's table (format FormatCSV, FormatNDJSON
// or FormatParquet; bom adds a byte-order mark to CSV) to w, or with
// rejects the rejects table (CSV). An error after the stream started is
// reported: discard what w received.
func (c *Client) MergeTable(ctx context.Context, id, format string, bom, rejects bool, w io.Writer) (int64, error) {
	ctx, touch, stop := c.stream(ctx)
	defer stop()
	q := url.Values{"format": {format}}
	if bom {
		q.Set("bom", "true")
	}
	what := "table"
	if rejects {
		what = "rejects"
	}
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/merges/"+url.PathEscape(id)+"/"+what+"?"+q.Encode(), nil, true)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, progressReader{resp.Body, touch})
	if err != nil {
		return n, c.readError(ctx, "merged "+what, err)
	}
	if msg := resp.Trailer.Get(TrailerError); msg != "" {
		return n, fmt.Errorf("merged %s: %s", what, msg)
	}
	return n, nil
}

// Watches lists the merged datasets the node keeps current.
func (c *Client) Watches(ctx context.Context) ([]WatchInfo, error) {
	var out []WatchInfo
	return out, c.get(ctx, "/api/v1/watches", &out)
}

// Watch asks the node to keep a merged dataset current.
func (c *Client) Watch(ctx context.Context, req WatchRequest) (*WatchInfo, error) {
	b, _ := json.Marshal(req)
	var out WatchInfo
	return &out, c.send(ctx, http.MethodPost, "/api/v1/watches", b, true, &out)
}

// Unwatch stops keeping d current (a merged dataset, or every one of a
// standard).
func (c *Client) Unwatch(ctx context.Context, d nii.DatasetID) (*UnwatchResult, error) {
	var out UnwatchResult
	return &out, c.send(ctx, http.MethodDelete, "/api/v1/watches/"+d.String(), nil, true, &out)
}

// Lineage asks the node to check a merged version's lineage: every cited
// manifest fetched (from its store or the federation) and verified.
func (c *Client) Lineage(ctx context.Context, r nii.Ref) (*LineageReport, error) {
	var out LineageReport
	return &out, c.sendLong(ctx, http.MethodGet, VersionPath(r)+"/lineage", nil, false, &out)
}

// LongTimeout bounds calls that may pull or merge before they answer
// (standards show, map suggest/check/publish, lineage).
const LongTimeout = 10 * time.Minute

// sendLong is send with LongTimeout (or the client's Timeout, if longer).
func (c *Client) sendLong(ctx context.Context, method, path string, body []byte, admin bool, out any) error {
	cc := *c
	if cc.Timeout < LongTimeout {
		cc.Timeout = LongTimeout
	}
	return cc.send(ctx, method, path, body, admin, out)
}

// Standardised is one standard a dataset's rows can be had in, and the
// mapping that gets them there (GET /api/v1/datasets/{org}/{name}/standardised).
type Standardised struct {
	Standard string `json:"standard"`          // org/name@N
	Choice   string `json:"choice"`            // publisher, harmoniser or identity
	Mapping  string `json:"mapping,omitempty"` // org/name@N; absent for the identity mapping
	Why      string `json:"why"`
	// Downloads are the standardised rows' URLs by format (csv, ndjson,
	// parquet).
	Downloads map[string]string `json:"downloads"`
}
