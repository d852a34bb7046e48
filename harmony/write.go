package harmony

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/nii-uk/nii"
)

// ColumnNames returns the merged table's column names in order.
func (m *Merged) ColumnNames() []string {
	names := make([]string, len(m.Columns))
	for i, c := range m.Columns {
		names[i] = c.Name
	}
	return names
}

// CSVOptions shape WriteCSV's output.
type CSVOptions struct {
	// BOM starts the file with a UTF-8 byte-order mark, so Excel reads it
	// as UTF-8.
	BOM bool
}

// WriteCSV writes the merged table as UTF-8 CSV: a header line, then each
// source's partition, byte for byte as cached, in the merge's stable order.
// A source that did not change between two merges therefore gives the same
// bytes in both outputs, and content-defined chunking of the next published
// version shares them.
func (m *Merged) WriteCSV(w io.Writer, opts CSVOptions) error {
	bw, err := m.startCSV(w, opts, m.ColumnNames())
	if err != nil {
		return err
	}
	for _, s := range m.Sources {
		rc, err := s.OpenRows()
		if err != nil {
			return err
		}
		_, err = io.Copy(bw, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteCSVHeader writes what WriteCSV writes before the first source's
// rows: the byte-order mark, if asked, and the header line. The node
// publishes a merged table as this and each source's OpenRows, chunked
// apart, so that a source that did not change keeps its chunks exactly.
func (m *Merged) WriteCSVHeader(w io.Writer, opts CSVOptions) error {
	bw, err := m.startCSV(w, opts, m.ColumnNames())
	if err != nil {
		return err
	}
	return bw.Flush()
}

// partitionRead is how much of a partition file is read at once.
const partitionRead = 1 << 20

// OpenRows returns the source's rows as the merged CSV has them (its
// PartitionBytes bytes, hashing to Partition), expanded from the cached
// partition, which holds each row compactly (the fields, then the line
// number): the source's provenance cells are put back around the line
// number. Close it when done.
func (s *SourceResult) OpenRows() (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(s.dir, "part.csv"))
	if err != nil {
		return nil, fmt.Errorf("merged partition of %s: %w (was the cache directory cleaned?)", s.Dataset, err)
	}
	r := &rowsReader{s: s, f: f, in: make([]byte, partitionRead)}
	r.head, r.tail = provenanceCells(s.Dataset, s.Version, s.Manifest, s.Mapping)
	return r, nil
}

// rowsReader expands a compact partition file as it is read.
type rowsReader struct {
	s          *SourceResult
	f          *os.File
	head, tail []byte
	in         []byte
	rest       []byte // an incomplete row carried to the next read
	quotes     int    // quote characters in rest: odd means inside a quoted cell
	out        []byte // expanded bytes not yet returned
	buf        []byte // out's backing array, reused
	written    int64
	eof        bool
}

func (r *rowsReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.eof {
			if len(r.rest) > 0 || r.written != r.s.PartitionBytes {
				return 0, fmt.Errorf("merged partition of %s: %w: %d bytes, the merge made %d", r.s.Dataset, nii.ErrCorrupt, r.written, r.s.PartitionBytes)
			}
			return 0, io.EOF
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	k := copy(p, r.out)
	r.out = r.out[k:]
	return k, nil
}

// fill reads the next piece of the file and expands the whole rows in it.
func (r *rowsReader) fill() error {
	k, rerr := io.ReadFull(r.f, r.in)
	switch {
	case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
		r.eof = true
	case rerr != nil:
		return fmt.Errorf("merged partition of %s: %w", r.s.Dataset, rerr)
	}
	data := append(r.rest, r.in[:k]...)
	out := r.buf[:0]
	start, scan := 0, len(r.rest)
	for {
		i := bytes.IndexByte(data[scan:], '\n')
		if i < 0 {
			r.quotes += bytes.Count(data[scan:], []byte{'"'})
			break
		}
		end := scan + i
		r.quotes += bytes.Count(data[scan:end], []byte{'"'})
		scan = end + 1
		if r.quotes%2 == 1 {
			continue // a line break inside a quoted cell
		}
		row := data[start:end]
		c := bytes.LastIndexByte(row, ',')
		if c < 0 {
			return fmt.Errorf("merged partition of %s: %w: a row without its line number", r.s.Dataset, nii.ErrCorrupt)
		}
		out = append(out, row[:c]...)
		out = append(out, r.head...)
		out = append(out, row[c+1:]...)
		out = append(out, r.tail...)
		start, r.quotes = scan, 0
	}
	r.written += int64(len(out))
	r.out, r.buf = out, out
	r.rest = append(r.rest[:0:0], data[start:]...)
	return nil
}

func (r *rowsReader) Close() error { return r.f.Close() }

// WriteRejectsCSV writes the rejects table: each rejected row's source,
// line, first rule and field, every reason, and its raw cells as a JSON
// array.
func (m *Merged) WriteRejectsCSV(w io.Writer, opts CSVOptions) error {
	return m.writeConcat(w, opts, RejectColumns, "rejects.csv")
}

// startCSV writes the BOM (if asked) and the header line.
func (m *Merged) startCSV(w io.Writer, opts CSVOptions, header []string) (*bufio.Writer, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	if opts.BOM {
		bw.WriteString("\ufeff")
	}
	cw := csv.NewWriter(bw)
	if err := cw.Write(header); err != nil {
		return nil, err
	}
	cw.Flush()
	return bw, cw.Error()
}

func (m *Merged) writeConcat(w io.Writer, opts CSVOptions, header []string, file string) error {
	bw, err := m.startCSV(w, opts, header)
	if err != nil {
		return err
	}
	for _, s := range m.Sources {
		f, err := os.Open(filepath.Join(s.dir, file))
		if err != nil {
			return fmt.Errorf("merged partition of %s: %w (was the cache directory cleaned?)", s.Dataset, err)
		}
		_, err = io.Copy(bw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

// EachRow streams every merged row to fn as its cells (the partitions'
// text: ISO dates, plain decimals, "true"/"false", "" for no value), in
// the merge's stable order. rec is reused between calls; fn's error stops
// the stream and is returned. The SQL tables load merged views with it.
func (m *Merged) EachRow(fn func(rec []string) error) error { return m.eachRow(fn) }

// eachRow streams every merged row, as its CSV cells, to fn.
func (m *Merged) eachRow(fn func(rec []string) error) error {
	for _, s := range m.Sources {
		f, err := os.Open(filepath.Join(s.dir, "part.csv"))
		if err != nil {
			return fmt.Errorf("merged partition of %s: %w (was the cache directory cleaned?)", s.Dataset, err)
		}
		cr := csv.NewReader(bufio.NewReaderSize(f, 256<<10))
		cr.ReuseRecord = true
		cr.FieldsPerRecord = len(m.Columns) - provenanceColumns + 1
		full := make([]string, len(m.Columns))
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err == nil {
				err = fn(s.fullRecord(full, rec))
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("merged partition of %s: %w", s.Dataset, err)
			}
		}
		f.Close()
	}
	return nil
}

// WriteNDJSON writes the merged table as newline-delimited JSON, one object
// per row with the columns in order: numbers as JSON numbers (exact
// decimals), booleans as JSON booleans, empty cells as null.
func (m *Merged) WriteNDJSON(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	keys := make([][]byte, len(m.Columns))
	for i, c := range m.Columns {
		k, _ := json.Marshal(c.Name)
		keys[i] = k
	}
	var buf []byte
	err := m.eachRow(func(rec []string) error {
		buf = append(buf[:0], '{')
		for i, c := range m.Columns {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, keys[i]...)
			buf = append(buf, ':')
			v := rec[i]
			switch {
			case v == "":
				buf = append(buf, "null"...)
			case c.Type == "number" || c.Type == "integer" || c.Type == "year" || c.Type == "boolean":
				buf = append(buf, v...)
			default:
				buf = strconv.AppendQuote(buf, v)
			}
		}
		buf = append(buf, '}', '\n')
		_, err := bw.Write(buf)
		return err
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// parquetRowGroup bounds the rows buffered per Parquet row group, and so
// the writer's memory.
const parquetRowGroup = 64 << 10

// WriteParquet writes the merged table as Parquet (pure Go, zstd): strings
// as UTF-8 (dictionary-encoded), numbers as DECIMAL(18,4), dates as DATE,
// datetimes as TIMESTAMP (µs, UTC), integers as INT64, all optional.
// Parquet groups order columns by name, so the file's column order is
// alphabetical; read columns by name.
func (m *Merged) WriteParquet(w io.Writer) error {
	group := parquet.Group{}
	for _, c := range m.Columns {
		var n parquet.Node
		switch c.Type {
		case "number":
			n = parquet.Decimal(numberDecimals, 18, parquet.Int64Type)
		case "integer", "year":
			n = parquet.Int(64)
		case "boolean":
			n = parquet.Leaf(parquet.BooleanType)
		case "date":
			n = parquet.Date()
		case "datetime":
			n = parquet.Timestamp(parquet.Microsecond)
		default:
			n = parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
		}
		group[c.Name] = parquet.Optional(n)
	}
	schema := parquet.NewSchema(m.Standard.Name, group)
	// leaf index of each of our columns in the schema's (sorted) order
	order := make([]int, len(m.Columns))
	sorted := m.ColumnNames()
	sort.Strings(sorted)
	pos := map[string]int{}
	for i, n := range sorted {
		pos[n] = i
	}
	for i, c := range m.Columns {
		order[i] = pos[c.Name]
	}
	pw := parquet.NewWriter(w, schema, parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(parquetRowGroup))
	row := make(parquet.Row, len(m.Columns))
	batch := make([]parquet.Row, 0, 1024)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := pw.WriteRows(batch)
		batch = batch[:0]
		return err
	}
	err := m.eachRow(func(rec []string) error {
		for i, c := range m.Columns {
			col := order[i]
			v := rec[i]
			if v == "" {
				row[col] = parquet.NullValue().Level(0, 0, col)
				continue
			}
			var pv parquet.Value
			switch c.Type {
			case "number":
				n, err := ParseNumber(v, NumberPlain)
				if err != nil {
					return err
				}
				pv = parquet.Int64Value(n)
			case "integer", "year":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return err
				}
				pv = parquet.Int64Value(n)
			case "boolean":
				pv = parquet.BooleanValue(v == "true")
			case "date":
				t, err := time.Parse(time.DateOnly, v)
				if err != nil {
					return err
				}
				pv = parquet.Int32Value(int32(t.Sub(epoch) / (24 * time.Hour)))
			case "datetime":
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return err
				}
				pv = parquet.Int64Value(t.UnixMicro())
			default:
				pv = parquet.ByteArrayValue([]byte(v))
			}
			row[col] = pv.Level(0, 1, col)
		}
		batch = append(batch, row.Clone())
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if cerr := pw.Close(); err == nil {
		err = cerr
	}
	return err
}

// Lineage lists everything a merged table was built from. The node records
// it in the merged dataset's manifest, so anyone who pulls the table can
// check each source's signature and re-derive any row.
type Lineage struct {
	Standard LineageStandard `json:"standard"`
	Inputs   []LineageInput  `json:"inputs"`
	Missing  []MissingSource `json:"missing,omitempty"`
}

// LineageStandard names the standard a merge conformed to.
type LineageStandard struct {
	Ref  string   `json:"ref"` // org/name@N
	Hash nii.Hash `json:"hash"`
}

// LineageInput is one source of a merge.
type LineageInput struct {
	Dataset  string   `json:"dataset"` // org/name
	Version  uint64   `json:"version"`
	Manifest nii.Hash `json:"manifest"`
	// Mapping is what the source's rows cite (the published mapping's
	// manifest hash, when the caller gave it); MappingHash the hash of the
	// mapping's canonical form.
	Mapping     nii.Hash `json:"mapping"`
	MappingHash nii.Hash `json:"mapping_hash"`
	// Partition is the BLAKE3 hash of the source's rows in the merged CSV.
	Partition nii.Hash `json:"partition"`
	Accepted  int64    `json:"accepted"`
	Rejected  int64    `json:"rejected"`
}

// Lineage returns the merge's lineage.
func (m *Merged) Lineage() Lineage {
	l := Lineage{Standard: LineageStandard{Ref: m.Standard.Ref.String(), Hash: m.Standard.Hash}, Missing: m.Missing}
	for _, s := range m.Sources {
		l.Inputs = append(l.Inputs, LineageInput{Dataset: s.Dataset.String(), Version: s.Version, Manifest: s.Manifest,
			Mapping: s.Mapping, MappingHash: s.MappingHash, Partition: s.Partition, Accepted: s.Report.Accepted, Rejected: s.Report.Rejected})
	}
	return l
}

// Fitness is a merge's fitness at a glance: a validation score per source
// and a coverage matrix of publisher × month.
type Fitness struct {
	Sources  []SourceFitness `json:"sources"`
	Coverage []CoverageCell  `json:"coverage"`
	Missing  []MissingSource `json:"missing,omitempty"`
}

// SourceFitness is one source's validation score.
type SourceFitness struct {
	Dataset  string  `json:"dataset"`
	Version  uint64  `json:"version"`
	DataRows int64   `json:"data_rows"`
	Accepted int64   `json:"accepted"`
	Rejected int64   `json:"rejected"`
	Score    float64 `json:"score"` // accepted / data rows
	// TopFailures are the most frequent reject rules.
	TopFailures []RuleCount `json:"top_failures,omitempty"`
}

// CoverageCell is one publisher's rows in one month ("" when the date could
// not be read).
type CoverageCell struct {
	Publisher  string  `json:"publisher"`
	Month      string  `json:"month"`
	Rows       int64   `json:"rows"`
	Rejected   int64   `json:"rejected"`
	Amount     Decimal `json:"amount"`
	RejectRate float64 `json:"reject_rate"`
}

// Fitness returns the merge's per-source scores and coverage matrix.
func (m *Merged) Fitness() Fitness {
	fit := Fitness{Missing: m.Missing}
	cells := map[[2]string]*CoverageCell{}
	for _, s := range m.Sources {
		r := s.Report
		sf := SourceFitness{Dataset: s.Dataset.String(), Version: s.Version, DataRows: r.DataRows, Accepted: r.Accepted, Rejected: r.Rejected, Score: r.Score()}
		sf.TopFailures = r.Failures[:min(3, len(r.Failures))]
		fit.Sources = append(fit.Sources, sf)
		for month, ms := range s.Months {
			k := [2]string{s.Dataset.Org, month}
			c := cells[k]
			if c == nil {
				c = &CoverageCell{Publisher: k[0], Month: k[1]}
				cells[k] = c
			}
			c.Rows += ms.Rows
			c.Rejected += ms.Rejected
			c.Amount += ms.Amount
		}
	}
	for _, c := range cells {
		if c.Rows > 0 {
			c.RejectRate = float64(c.Rejected) / float64(c.Rows)
		}
		fit.Coverage = append(fit.Coverage, *c)
	}
	sort.Slice(fit.Coverage, func(i, j int) bool {
		a, b := fit.Coverage[i], fit.Coverage[j]
		if a.Publisher != b.Publisher {
			return a.Publisher < b.Publisher
		}
		return a.Month < b.Month
	})
	return fit
}

// RowReader reads a merged table's rows one at a time, as typed values:
// what a SQL engine loads (package query's RowSource has this shape). Make
// one with Merged.Rows; Close it when done.
type RowReader struct {
	m    *Merged
	next int // the next source to open
	f    *os.File
	cr   *csv.Reader
	src  *SourceResult
	full []string
}

// provenanceColumns counts the provenance columns every merged row ends
// with; a cached partition stores only the line of them.
const provenanceColumns = 6

// setProvenance makes the provenance cells of s's rows (the line's is
// left empty), once, before the result is shared.
func (s *SourceResult) setProvenance() {
	s.prov = []string{s.Dataset.Org, s.Dataset.String(), strconv.FormatUint(s.Version, 10), s.Manifest.String(), "", s.Mapping.String()}
}

// fullRecord fills full (len(Columns)) with a compact partition record
// (the fields, then the line) and the source's provenance.
func (s *SourceResult) fullRecord(full, compact []string) []string {
	n := len(compact) - 1
	copy(full, compact[:n])
	copy(full[n:], s.prov)
	full[n+4] = compact[n]
	return full
}

// Rows returns a reader of the merged rows, in the merged table's order
// (by dataset, then version; each source's rows in file order). Each row's
// values, by column type: string (strings, and every text type); the
// decimal text of a number ("-1234.50", four decimals at most); int64 for
// integers and years; bool; time.Time for dates (midnight UTC) and
// datetimes (UTC); nil for an empty cell.
func (m *Merged) Rows() *RowReader { return &RowReader{m: m} }

// Next fills row (len(row) == len(Columns)) with the next row, or returns
// io.EOF after the last.
func (r *RowReader) Next(row []any) error {
	if len(row) != len(r.m.Columns) {
		return fmt.Errorf("merged rows: row has %d cells, the table %d columns", len(row), len(r.m.Columns))
	}
	for {
		if r.cr == nil {
			if r.next >= len(r.m.Sources) {
				return io.EOF
			}
			r.src = r.m.Sources[r.next]
			r.next++
			f, err := os.Open(filepath.Join(r.src.dir, "part.csv"))
			if err != nil {
				return fmt.Errorf("merged partition of %s: %w (was the cache directory cleaned?)", r.src.Dataset, err)
			}
			r.f = f
			r.cr = csv.NewReader(bufio.NewReaderSize(f, 256<<10))
			r.cr.ReuseRecord = true
			r.cr.FieldsPerRecord = len(r.m.Columns) - provenanceColumns + 1
			r.full = make([]string, len(r.m.Columns))
		}
		compact, err := r.cr.Read()
		if err == io.EOF {
			r.f.Close()
			r.f, r.cr = nil, nil
			continue
		}
		if err != nil {
			return fmt.Errorf("merged partition of %s: %w", r.src.Dataset, err)
		}
		rec := r.src.fullRecord(r.full, compact)
		for i, c := range r.m.Columns {
			v, err := typedCell(rec[i], c.Type)
			if err != nil {
				return fmt.Errorf("merged partition of %s: column %s: %w", r.src.Dataset, c.Name, err)
			}
			row[i] = v
		}
		return nil
	}
}

// Close releases the file being read. It is idempotent.
func (r *RowReader) Close() error {
	if r.f != nil {
		err := r.f.Close()
		r.f, r.cr = nil, nil
		return err
	}
	return nil
}

// typedCell converts one cell of a merged partition to its Go value.
func typedCell(v, typ string) (any, error) {
	if v == "" {
		return nil, nil
	}
	switch typ {
	case "number":
		return v, nil
	case "integer", "year":
		return strconv.ParseInt(v, 10, 64)
	case "boolean":
		return v == "true", nil
	case "date":
		return time.Parse(time.DateOnly, v)
	case "datetime":
		return time.Parse(time.RFC3339, v)
	}
	return v, nil
}
