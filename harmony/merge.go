package harmony

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/zeebo/blake3"

	"github.com/nii-uk/nii"
)

// Source is one input of a merge: a version of a dataset, a way to read its
// bytes, and the mapping that turns its layout into the standard's fields.
type Source struct {
	Dataset  nii.DatasetID // its Org is the publisher
	Version  uint64
	Manifest nii.Hash // the source version's manifest hash, cited on every row
	// Open returns the version's content. It is called at most once per
	// merge, and not at all when the source's partition is cached.
	Open    func(ctx context.Context) (io.ReadCloser, error)
	Mapping *Mapping
	// MappingID is what every row from this source and the lineage cite as
	// its mapping (_mapping): the node gives the published mapping's
	// manifest hash, which anyone can verify by its signature. Zero cites
	// Mapping.Hash, the hash of the mapping's canonical form.
	MappingID nii.Hash
}

// mappingID is what rows from s cite as their mapping.
func (s *Source) mappingID() nii.Hash {
	if s.MappingID.IsZero() {
		return s.Mapping.Hash
	}
	return s.MappingID
}

func (s *Source) ref() string { return nii.Ref{Dataset: s.Dataset, Version: s.Version}.String() }

// MergeOptions configure Merge.
type MergeOptions struct {
	// CacheDir holds each source's mapped partition, keyed by (source
	// manifest, mapping hash, standard hash). Required; the caller owns it.
	CacheDir string
	// AllowPartial merges what can be read when some sources cannot; the
	// result's Missing says which. Otherwise Merge fails with the list.
	AllowPartial bool
	// Workers bounds the sources mapped at once (default GOMAXPROCS).
	Workers int
	Logger  *slog.Logger
}

// Decimal is an exact amount in 1/10,000ths, as merged numbers are held.
type Decimal int64

// String renders d with at least two decimals ("1234.50").
func (d Decimal) String() string { return formatDecimal(int64(d)) }

// MarshalText renders d as its decimal string, so JSON keeps it exact.
func (d Decimal) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a plain decimal.
func (d *Decimal) UnmarshalText(b []byte) error {
	n, err := ParseNumber(string(b), NumberPlain)
	*d = Decimal(n)
	return err
}

// MonthStats is one source's rows in one month (by the standard's date
// field; "" for rows whose date could not be read).
type MonthStats struct {
	Rows     int64   `json:"rows"`
	Rejected int64   `json:"rejected"`
	Amount   Decimal `json:"amount"` // accepted rows only
}

// SourceResult is what the merge made of one source.
type SourceResult struct {
	Dataset  nii.DatasetID `json:"dataset"`
	Version  uint64        `json:"version"`
	Manifest nii.Hash      `json:"manifest"`
	// Mapping is what the source's rows cite as their mapping (Source's
	// MappingID); MappingHash the hash of the mapping's canonical form.
	Mapping     nii.Hash `json:"mapping"`
	MappingHash nii.Hash `json:"mapping_hash"`
	Report      *Report  `json:"report"`
	// Amount totals the accepted rows' amount field.
	Amount Decimal                `json:"amount"`
	Months map[string]*MonthStats `json:"months"`
	// Partition is the BLAKE3 hash of the source's rows in the merged CSV
	// (without the header line); PartitionBytes their length.
	Partition      nii.Hash `json:"partition"`
	PartitionBytes int64    `json:"partition_bytes"`
	// FileBytes is the length of the cached partition file, which holds
	// the rows compactly: each row's provenance cells other than its line
	// are the same for the whole source, so they are added on output
	// rather than stored (two 64-character hashes a row, otherwise).
	FileBytes int64 `json:"file_bytes"`
	// FromCache is true when the partition was reused, not re-mapped.
	FromCache bool `json:"-"`

	dir  string
	prov []string // the provenance cells (setProvenance, write.go)
}

// MissingSource is a source the merge could not use, and why.
type MissingSource struct {
	Dataset  nii.DatasetID `json:"dataset"`
	Version  uint64        `json:"version"`
	Manifest nii.Hash      `json:"manifest"`
	Reason   string        `json:"reason"`
}

// MissingError is Merge's error when sources could not be read or mapped
// and partial merges are not allowed.
type MissingError struct{ Missing []MissingSource }

func (e *MissingError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, m := range e.Missing {
		parts[i] = fmt.Sprintf("%s: %s", nii.Ref{Dataset: m.Dataset, Version: m.Version}, m.Reason)
	}
	return fmt.Sprintf("merge: %d source(s) could not be used (merge what can be read with allow-partial): %s", len(e.Missing), strings.Join(parts, "; "))
}

// Unwrap makes a MissingError an nii.ErrUnavailable: the sources may be
// readable later, or the merge may go on without them.
func (e *MissingError) Unwrap() error { return nii.ErrUnavailable }

// Column is a column of the merged table, typed as in Table Schema.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Provenance columns on every merged row.
const (
	ColPublisher = "_publisher"
	ColDataset   = "_dataset"
	ColVersion   = "_version"
	ColManifest  = "_source_manifest"
	ColLine      = "_source_line"
	ColMapping   = "_mapping"
)

// NormalisedSuffix names the normalised supplier column beside the raw one.
const NormalisedSuffix = "_normalised"

// Merged is the result of a merge: one table made of each source's
// partition, in a stable order (by dataset, then version), kept in the cache
// directory and written out by WriteCSV, WriteNDJSON and WriteParquet.
type Merged struct {
	Standard *Standard
	Columns  []Column
	Sources  []*SourceResult
	Missing  []MissingSource
	// Remapped counts the sources mapped in this merge; the others came
	// from the cache.
	Remapped int
}

// cacheVersion changes whenever the partition format does, so old caches
// are not reused.
const cacheVersion = "harmony-partition/3"

func partitionKey(std *Standard, s *Source) string {
	h := nii.Hasher()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", cacheVersion, s.Dataset, s.Version)
	h.Write(s.Manifest[:])
	h.Write(s.Mapping.Hash[:])
	id := s.mappingID()
	h.Write(id[:])
	h.Write(std.Hash[:])
	var k nii.Hash
	copy(k[:], h.Sum(nil))
	return k.String()
}

// mergedColumns are the merged table's columns for std: its fields, the
// normalised supplier beside the supplier field, then provenance.
func mergedColumns(std *Standard) []Column {
	var cols []Column
	for i := range std.Fields {
		f := &std.Fields[i]
		t := f.Type
		if f.kind == kString {
			t = "string"
		}
		cols = append(cols, Column{f.Name, t})
		if f.Role == RoleSupplier {
			cols = append(cols, Column{f.Name + NormalisedSuffix, "string"})
		}
	}
	return append(cols,
		Column{ColPublisher, "string"}, Column{ColDataset, "string"}, Column{ColVersion, "integer"},
		Column{ColManifest, "string"}, Column{ColLine, "integer"}, Column{ColMapping, "string"})
}

// RejectColumns are the rejects table's columns.
var RejectColumns = []string{ColPublisher, ColDataset, ColVersion, ColManifest, ColLine, ColMapping, "rule", "field", "reason", "raw"}

// Merge maps every source into std's fields and merges them. Each source's
// partition is read from the cache when its (manifest, mapping, standard) is
// there, and otherwise mapped, streaming, and cached. Sources that cannot be
// opened, read or mapped make Merge fail with a *MissingError listing them
// all, unless opts.AllowPartial.
func Merge(ctx context.Context, std *Standard, sources []Source, opts MergeOptions) (*Merged, error) {
	if opts.CacheDir == "" {
		return nil, fmt.Errorf("merge: no cache directory: give MergeOptions.CacheDir")
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("merge: cache directory: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	srcs := make([]*Source, len(sources))
	for i := range sources {
		srcs[i] = &sources[i]
	}
	sort.SliceStable(srcs, func(i, j int) bool {
		a, b := srcs[i], srcs[j]
		if a.Dataset != b.Dataset {
			return a.Dataset.String() < b.Dataset.String()
		}
		return a.Version < b.Version
	})
	for i := 1; i < len(srcs); i++ {
		if srcs[i].Dataset == srcs[i-1].Dataset && srcs[i].Version == srcs[i-1].Version {
			return nil, fmt.Errorf("merge: %s is given twice", srcs[i].ref())
		}
	}
	out := &Merged{Standard: std, Columns: mergedColumns(std)}
	results := make([]*SourceResult, len(srcs))
	errs := make([]error, len(srcs))
	remapped := make([]bool, len(srcs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for i, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			results[i], remapped[i], errs[i] = mergeSource(ctx, std, s, opts.CacheDir, log)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, s := range srcs {
		if errs[i] != nil {
			out.Missing = append(out.Missing, MissingSource{Dataset: s.Dataset, Version: s.Version, Manifest: s.Manifest, Reason: errs[i].Error()})
			continue
		}
		out.Sources = append(out.Sources, results[i])
		if remapped[i] {
			out.Remapped++
		}
	}
	if len(out.Missing) > 0 && !opts.AllowPartial {
		return nil, &MissingError{Missing: out.Missing}
	}
	return out, nil
}

// mergeSource returns s's partition, from the cache or by mapping it.
func mergeSource(ctx context.Context, std *Standard, s *Source, cacheDir string, log *slog.Logger) (*SourceResult, bool, error) {
	if s.Mapping == nil {
		return nil, false, fmt.Errorf("no mapping")
	}
	if !s.Mapping.AppliesToDataset(s.Dataset) {
		return nil, false, fmt.Errorf("its mapping %s applies to %s, not to %s", s.Mapping.Hash, strings.Join(s.Mapping.AppliesTo, ", "), s.Dataset)
	}
	if err := s.Mapping.Bind(std); err != nil {
		return nil, false, err
	}
	dir := filepath.Join(cacheDir, partitionKey(std, s))
	if res, err := readPartitionMeta(dir); err == nil {
		res.FromCache, res.dir = true, dir
		res.setProvenance()
		return res, false, nil
	}
	if s.Open == nil {
		return nil, false, fmt.Errorf("no way to read it")
	}
	rc, err := s.Open(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("cannot be read: %w", err)
	}
	defer rc.Close()
	tmp, err := os.MkdirTemp(cacheDir, ".tmp-")
	if err != nil {
		return nil, false, fmt.Errorf("cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	res := &SourceResult{Dataset: s.Dataset, Version: s.Version, Manifest: s.Manifest, Mapping: s.mappingID(), MappingHash: s.Mapping.Hash, Months: map[string]*MonthStats{}}
	w, err := newPartitionWriter(tmp, std, s, res)
	if err != nil {
		return nil, false, err
	}
	rep, err := apply(ctx, rc, std, s.Mapping, w)
	if err == nil {
		err = w.close()
	} else {
		w.abort()
	}
	if err != nil {
		return nil, false, err
	}
	res.Report = rep
	b, err := json.Marshal(res)
	if err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o644); err != nil {
		return nil, false, fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "meta.json")); statErr != nil {
			return nil, false, fmt.Errorf("cache: %w", err)
		}
		// another merge cached the same partition first: same bytes
	}
	res.dir = dir
	res.setProvenance()
	log.Info("mapped source", "dataset", s.Dataset.String(), "version", s.Version, "accepted", rep.Accepted, "rejected", rep.Rejected)
	return res, true, nil
}

func readPartitionMeta(dir string) (*SourceResult, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	var res SourceResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, err
	}
	if res.Report == nil {
		return nil, errors.New("incomplete cache entry")
	}
	// a partition truncated or edited since is mapped again
	if st, err := os.Stat(filepath.Join(dir, "part.csv")); err != nil || st.Size() != res.FileBytes {
		os.RemoveAll(dir)
		return nil, errors.New("damaged cache entry")
	}
	return &res, nil
}

// partitionWriter is the rowSink that writes a source's partition and its
// rejects, and tallies its months.
type partitionWriter struct {
	std                     *Standard
	res                     *SourceResult
	partF, rejF             *os.File
	partB, rejB             *bufio.Writer
	rej                     *csv.Writer
	hash                    *blake3.Hasher
	expanded                int64 // the partition's length in the merged CSV
	buf                     []byte
	prov                    [6]string
	provHead, provTail      []byte // the provenance cells before and after the line number
	dates                   map[int64]string
	suppliers               map[string]string
	byDay                   map[int64]*MonthStats // a day's month, once looked up
	dateIdx, amtIdx, supIdx int
}

func newPartitionWriter(dir string, std *Standard, s *Source, res *SourceResult) (*partitionWriter, error) {
	pw := &partitionWriter{std: std, res: res,
		dateIdx: std.fieldWithRole(RoleDate), amtIdx: std.fieldWithRole(RoleAmount), supIdx: std.fieldWithRole(RoleSupplier)}
	var err error
	if pw.partF, err = os.Create(filepath.Join(dir, "part.csv")); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if pw.rejF, err = os.Create(filepath.Join(dir, "rejects.csv")); err != nil {
		pw.partF.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	pw.hash = nii.Hasher()
	pw.partB = bufio.NewWriterSize(pw.partF, 256<<10)
	pw.rejB = bufio.NewWriterSize(pw.rejF, 64<<10)
	pw.rej = csv.NewWriter(pw.rejB)
	pw.prov = [6]string{s.Dataset.Org, s.Dataset.String(), strconv.FormatUint(s.Version, 10), s.Manifest.String(), "", s.mappingID().String()}
	pw.provHead, pw.provTail = provenanceCells(s.Dataset, s.Version, s.Manifest, s.mappingID())
	pw.dates = map[int64]string{}
	pw.suppliers = map[string]string{}
	pw.byDay = map[int64]*MonthStats{}
	return pw, nil
}

// provenanceCells are a source's provenance cells in the merged CSV: those
// before the line number (",publisher,dataset,version,manifest,") and
// after it (",mapping\n").
func provenanceCells(d nii.DatasetID, version uint64, manifest, mapping nii.Hash) (head, tail []byte) {
	for _, p := range []string{d.Org, d.String(), strconv.FormatUint(version, 10), manifest.String()} {
		head = appendCSVField(append(head, ','), p)
	}
	head = append(head, ',')
	tail = append(appendCSVField(append(tail, ','), mapping.String()), '\n')
	return head, tail
}

func (pw *partitionWriter) month(vals []value) *MonthStats {
	day, dated := int64(0), false
	if pw.dateIdx >= 0 && vals != nil && !vals[pw.dateIdx].null {
		day, dated = vals[pw.dateIdx].n, true
		if pw.std.Fields[pw.dateIdx].kind == kDatetime {
			day = floorDiv(day, 86400)
		}
		if ms, ok := pw.byDay[day]; ok {
			return ms
		}
	}
	key := ""
	if dated {
		key = monthOf(day)
	}
	ms := pw.res.Months[key]
	if ms == nil {
		ms = &MonthStats{}
		pw.res.Months[key] = ms
	}
	if dated {
		pw.byDay[day] = ms
	}
	return ms
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func (pw *partitionWriter) accept(line int64, raw []string, vals []value) error {
	buf := pw.buf[:0]
	for i := range pw.std.Fields {
		f := &pw.std.Fields[i]
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = pw.appendValue(buf, vals[i], f.kind)
		if i == pw.supIdx {
			buf = append(buf, ',')
			buf = appendCSVField(buf, pw.normalised(vals[i].s))
		}
	}
	// The file gets the compact row (fields, line); the hash and the
	// length are of the row as the merged CSV has it.
	fields := len(buf)
	buf = append(buf, ',')
	buf = strconv.AppendInt(buf, line, 10)
	buf = append(buf, '\n')
	pw.buf = buf
	pw.hash.Write(buf[:fields])
	pw.hash.Write(pw.provHead)
	pw.hash.Write(buf[fields+1 : len(buf)-1])
	pw.hash.Write(pw.provTail)
	pw.expanded += int64(len(buf) - 2 + len(pw.provHead) + len(pw.provTail))
	ms := pw.month(vals)
	ms.Rows++
	if pw.amtIdx >= 0 && !vals[pw.amtIdx].null {
		a := vals[pw.amtIdx].n
		if pw.std.Fields[pw.amtIdx].kind == kInteger {
			a *= numberScale
		}
		ms.Amount += Decimal(a)
		pw.res.Amount += Decimal(a)
	}
	_, err := pw.partB.Write(buf)
	return err
}

// appendValue appends v's canonical text as a CSV field; dates, which
// repeat, are formatted once.
func (pw *partitionWriter) appendValue(buf []byte, v value, k kind) []byte {
	switch {
	case v.null:
		return buf
	case k == kString:
		return appendCSVField(buf, v.s)
	case k == kNumber:
		return appendDecimal(buf, v.n)
	case k == kDate:
		s, ok := pw.dates[v.n]
		if !ok {
			s = v.format(k)
			if len(pw.dates) > 1<<16 {
				clear(pw.dates)
			}
			pw.dates[v.n] = s
		}
		return append(buf, s...)
	}
	return appendCSVField(buf, v.format(k))
}

// normalised returns NormaliseSupplier(s), remembering recent answers:
// a publisher pays the same suppliers again and again.
func (pw *partitionWriter) normalised(s string) string {
	if n, ok := pw.suppliers[s]; ok {
		return n
	}
	n := NormaliseSupplier(s)
	if len(pw.suppliers) > 1<<16 {
		clear(pw.suppliers)
	}
	pw.suppliers[s] = n
	return n
}

// appendCSVField appends s quoted as encoding/csv's Writer would quote it.
func appendCSVField(buf []byte, s string) []byte {
	if !csvNeedsQuotes(s) {
		return append(buf, s...)
	}
	buf = append(buf, '"')
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		buf = append(buf, s[:i+1]...)
		buf = append(buf, '"')
		s = s[i+1:]
	}
	buf = append(buf, s...)
	return append(buf, '"')
}

// csvNeedsQuotes is encoding/csv's rule (Writer.fieldNeedsQuotes) for ",".
func csvNeedsQuotes(s string) bool {
	if s == "" {
		return false
	}
	if s == `\.` {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			return true
		}
	}
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsSpace(r)
}

// appendDecimal appends formatDecimal(n) without allocating.
func appendDecimal(buf []byte, n int64) []byte {
	u := uint64(n)
	if n < 0 {
		buf = append(buf, '-')
		u = -u
	}
	buf = strconv.AppendUint(buf, u/numberScale, 10)
	fp := u % numberScale
	d := [4]byte{byte('0' + fp/1000), byte('0' + fp/100%10), byte('0' + fp/10%10), byte('0' + fp%10)}
	end := 4
	for end > 2 && d[end-1] == '0' {
		end--
	}
	buf = append(buf, '.')
	return append(buf, d[:end]...)
}

func (pw *partitionWriter) reject(line int64, raw []string, fails []failure, vals []value) error {
	ms := pw.month(vals)
	ms.Rows++
	ms.Rejected++
	reasons := make([]string, len(fails))
	for i, f := range fails {
		reasons[i] = f.reason
	}
	rawJSON, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	if raw == nil {
		rawJSON = []byte("[]")
	}
	pw.prov[4] = strconv.FormatInt(line, 10)
	row := append(append([]string(nil), pw.prov[:]...), fails[0].rule, fails[0].field, strings.Join(reasons, "; "), string(rawJSON))
	return pw.rej.Write(row)
}

func (pw *partitionWriter) close() error {
	pw.rej.Flush()
	err := errors.Join(pw.rej.Error(), pw.partB.Flush(), pw.rejB.Flush(), pw.partF.Close(), pw.rejF.Close())
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	copy(pw.res.Partition[:], pw.hash.Sum(nil))
	pw.res.PartitionBytes = pw.expanded
	st, err := os.Stat(pw.partF.Name())
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	pw.res.FileBytes = st.Size()
	return nil
}

func (pw *partitionWriter) abort() {
	pw.partF.Close()
	pw.rejF.Close()
}
