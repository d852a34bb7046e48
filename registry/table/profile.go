package table

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/nii-uk/nii"
)

// Sampling limits. The first records of a file, up to sampleRows data rows or
// sampleBytes bytes, are buffered and parsed with encoding/csv to find the
// dialect, the header and the column types; the rest is only counted.
const (
	sampleRows  = 10_000
	sampleLines = sampleRows + 1_000 // newlines buffered at first: data rows plus room for a preamble
	sampleBytes = 8 << 20

	// Times the newline budget may be raised when records span lines.
	maxExtensions = 3

	binaryWindow    = 8 << 10  // bytes checked for NULs
	delimWindow     = 64 << 10 // bytes looked at to choose the delimiter
	delimRecords    = 200      // records looked at to choose the delimiter
	headerWindow    = 1_000    // records searched for the header
	headerLookahead = 10       // rows below a header candidate checked for consistency
	maxRowFields    = 1 << 16  // a sample row with more fields is refused (bounds memory)

)

// Errors Result returns for content that is not a usable table. Both are
// the file's fault, never the reader's: the file can still be kept, as a
// file (package node publishes it unprofiled).
var (
	// ErrEmpty: the content is empty, or only a byte-order mark.
	ErrEmpty = errors.New("empty file")
	// ErrNotTable: the content is binary, or no header row and no record of
	// two or more fields is to be found. The error says which.
	ErrNotTable = errors.New("not a CSV table")
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func notTable(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotTable}, args...)...)
}

type profilePhase uint8

const (
	phaseSampling profilePhase = iota // buffering the sample
	phaseCounting                     // sample analysed; counting the rest
	phaseFailed                       // the sample is not a usable table; input ignored
)

// Profiler is an io.Writer that profiles CSV content streamed through it:
// dialect, preamble/header position, exact data row count, columns with
// Frictionless Table Schema types inferred from a sample.
//
// The first records (up to 10,000 data rows or 8 MiB, whichever comes first)
// are buffered and parsed with encoding/csv (LazyQuotes, variable field
// counts); after that the profiler keeps only a few words of state and counts
// records with a quote-aware scanner that agrees with encoding/csv record for
// record, so memory stays bounded however large the file.
//
// Rows are counted over the whole file and exclude blank records (records
// whose fields are all empty, such as ",,,,,"), as well as the empty lines
// encoding/csv skips. Everything else is learnt from the sample:
//
//   - a UTF-8 byte-order mark is stripped; the encoding is "utf-8" if the
//     sample is valid UTF-8, else "windows-1252" (names are converted);
//   - the delimiter is the one of , ; tab | that splits the sample's first
//     records most consistently; the line terminator is the majority one;
//   - the header is the first record with at least two non-empty cells that
//     looks like one (see findHeader); HeaderRow counts records as
//     encoding/csv does, so lines with nothing on them are not counted;
//   - names are trimmed; a nameless column is "column_N" (1-based), or
//     dropped if it is trailing and has no data; at most nii.MaxColumns are
//     kept;
//   - a column's type is the most specific that 90% of its non-null sampled
//     values parse as (Frictionless's default confidence), else string;
//     cells that are empty or white space are nulls and don't vote;
//   - RaggedRows counts sampled data rows whose field count differs from the
//     header's.
//
// A Profiler is not safe for concurrent use.
type Profiler struct {
	// Limits; NewProfiler sets the defaults, tests may shrink them.
	maxRows, maxLines, maxBytes int

	phase      profilePhase
	buf        []byte // sample, while phaseSampling
	lines      int    // newlines in buf
	extensions int    // times maxLines was raised

	sc  csvScanner // counts records after the sample
	an  sampleProfile
	err error

	// After the sample, whole records are parsed and typed as they come:
	// pending holds the bytes from the start of the first record not yet
	// typed (pendStart is its offset in what sc has scanned).
	pending   []byte
	pendStart int64

	done  bool
	table *nii.Table
}

// sampleProfile is what the sample says about the table.
type sampleProfile struct {
	bom       bool
	delim     byte
	encoding  string
	lineTerm  string
	headerRow int   // 1-based record number
	dataRows  int64 // non-blank records below the header in the sample
	sampled   int64 // data rows typed: all of them, unless typing stopped
	ragged    int64 // data rows whose field count differs from the header's
	columns   []nii.Column

	header       []string   // the header's cells, as in the file
	hdrFields    int        // its field count
	typers       []colTyper // one per header cell, fed every data row
	initialSpace bool       // some cell starts with white space
	invalidUTF8  bool       // bytes past the sample are not UTF-8
	typingStop   string     // why typing stopped before the end ("" if it did not)
}

// NewProfiler returns a profiler ready for Write.
func NewProfiler() *Profiler {
	return newProfiler(sampleRows, sampleLines, sampleBytes)
}

func newProfiler(maxRows, maxLines, maxBytes int) *Profiler {
	return &Profiler{maxRows: maxRows, maxLines: maxLines, maxBytes: maxBytes}
}

// Write feeds the next bytes of the file. It always consumes all of b and
// never returns an error: problems with the content surface in Result.
func (p *Profiler) Write(b []byte) (int, error) {
	n := len(b)
	if p.done {
		return n, nil
	}
	if p.phase == phaseSampling {
		b = p.fill(b)
	}
	if p.phase == phaseCounting && len(b) > 0 {
		p.count(b)
	}
	return n, nil
}

// maxPending bounds the bytes of one record held for typing: a record
// longer than this (a broken quote swallowing the rest of the file, say)
// stops typing, and every column is declared string from there.
const maxPending = 16 << 20

// count scans b for records after the sample, and types every complete
// record.
func (p *Profiler) count(b []byte) {
	p.sc.scan(b)
	if p.an.typingStop != "" {
		return
	}
	p.pending = append(p.pending, b...)
	done := int(p.sc.boundary - p.pendStart)
	if done > 0 {
		p.typeRecords(p.pending[:done])
		k := copy(p.pending, p.pending[done:])
		p.pending = p.pending[:k]
		p.pendStart = p.sc.boundary
	}
	if len(p.pending) > maxPending {
		p.stopTyping(fmt.Sprintf("a record of more than %d bytes after row %d", maxPending, p.an.sampled))
	}
}

// typeRecords parses whole records and types their fields.
func (p *Profiler) typeRecords(b []byte) {
	an := &p.an
	if !an.invalidUTF8 && an.encoding == "utf-8" && !utf8.Valid(b) {
		an.invalidUTF8 = true
	}
	r := newCSVReader(b, an.delim)
	for {
		rec, err := r.Read()
		if err != nil {
			return
		}
		if isBlank(rec) {
			continue
		}
		an.typeRow(rec, decodeWindows1252)
	}
}

// stopTyping gives up typing: every column becomes a string, which any
// value is, and the reason is kept.
func (p *Profiler) stopTyping(why string) {
	p.an.typingStop = why
	for j := range p.an.typers {
		p.an.typers[j].ok = 0
	}
	p.pending = nil
}

// fill appends to the sample up to the sampling limits, analysing the sample
// once a limit is reached, and returns the bytes it did not take. Where the
// sample stops depends only on the content, never on how it was split into
// Writes.
func (p *Profiler) fill(b []byte) []byte {
	for {
		c := b[:min(len(b), p.maxBytes-len(p.buf))]
		take := len(c)
		for pos := 0; p.lines < p.maxLines; {
			k := bytes.IndexByte(c[pos:], '\n')
			if k < 0 {
				break
			}
			pos += k + 1
			p.lines++
			if p.lines == p.maxLines {
				take = pos
			}
		}
		p.buf = append(p.buf, c[:take]...)
		b = b[take:]
		switch {
		case len(p.buf) >= p.maxBytes:
		case p.lines >= p.maxLines:
			if p.extendSample() {
				continue
			}
		default:
			return nil // all of b taken; the sample wants more
		}
		p.analyze(false)
		return b
	}
}

// extendSample is called when the sample has reached its newline budget. If
// quoted fields spanning lines leave it short of rows, it raises the budget
// (a few times at most) and reports true.
func (p *Profiler) extendSample() bool {
	if p.extensions >= maxExtensions {
		return false
	}
	p.extensions++
	data := bytes.TrimPrefix(p.buf, utf8BOM)
	delim, ok := detectDelimiter(data)
	if !ok {
		return false
	}
	s := csvScanner{delim: delim}
	s.scan(data)
	target := int64(p.maxRows + (p.maxLines-p.maxRows)/2) // rows, with room for a preamble
	if s.rows >= target {
		return false
	}
	perRow := float64(p.lines) / float64(max(s.rows, 1))
	p.maxLines += int(float64(target-s.rows)*perRow) + (p.maxLines-p.maxRows)/2 + 1
	return true
}

// Result returns the table profile. Call it after the last Write. It returns
// an error if the content is not a usable CSV table: empty, binary, or with
// no header row to be found.
func (p *Profiler) Result() (*nii.Table, error) {
	if !p.done {
		p.done = true
		if p.phase == phaseSampling {
			p.analyze(true)
		}
		if p.err == nil {
			p.sc.finish()
			an := &p.an
			if an.typingStop == "" && len(p.pending) > 0 {
				p.typeRecords(p.pending) // the last record, with no line end
			}
			p.pending = nil
			if an.invalidUTF8 {
				// Bytes past the sample are not UTF-8: the file is read as
				// windows-1252 (what the sample held is ASCII or the same).
				an.encoding = "windows-1252"
			}
			an.finishColumns()
			p.table = &nii.Table{
				Encoding:         an.encoding,
				BOM:              an.bom,
				Delimiter:        string(rune(an.delim)),
				LineTerminator:   an.lineTerm,
				HeaderRow:        an.headerRow,
				Rows:             an.dataRows + p.sc.rows,
				Columns:          an.columns,
				RaggedRows:       an.ragged,
				SampledRows:      an.sampled,
				SkipInitialSpace: an.initialSpace,
				TypesStopped:     an.typingStop,
			}
		}
		p.buf = nil
	}
	if p.err != nil {
		return nil, p.err
	}
	t := *p.table
	t.Columns = slices.Clone(p.table.Columns)
	return &t, nil
}

// Profile reads r to the end and profiles it as a CSV table.
func Profile(r io.Reader) (*nii.Table, error) {
	p := NewProfiler()
	if _, err := io.Copy(p, r); err != nil {
		return nil, fmt.Errorf("reading table: %w", err)
	}
	return p.Result()
}

func (p *Profiler) fail(err error) {
	p.err = err
	p.phase = phaseFailed
	p.buf = nil
}

// analyze profiles the buffered sample. final says the whole input is in the
// buffer; otherwise the sample ends at the last complete record in the buffer
// and the bytes after it go to the counting scanner.
func (p *Profiler) analyze(final bool) {
	data := p.buf
	p.buf = nil
	an := &p.an
	if bytes.HasPrefix(data, utf8BOM) {
		an.bom = true
		data = data[len(utf8BOM):]
	}
	if len(data) == 0 {
		p.fail(ErrEmpty)
		return
	}
	if bytes.IndexByte(data[:min(len(data), binaryWindow)], 0) >= 0 {
		p.fail(notTable("binary content (NUL bytes)"))
		return
	}
	switch mt, _, _ := strings.Cut(http.DetectContentType(data), ";"); mt {
	case "application/pdf", "application/postscript", "application/zip", "application/x-gzip":
		p.fail(notTable("content looks like %s", mt))
		return
	}
	delim, ok := detectDelimiter(data)
	if !ok {
		p.fail(notTable("no row has two or more fields"))
		return
	}
	an.delim = delim

	// Find the last record boundary, so the sample holds whole records and
	// the counting scanner starts at the beginning of one.
	bs := csvScanner{delim: delim, countFields: true}
	bs.scan(data)
	cut := int(bs.boundary)
	if final {
		bs.finish()
		cut = len(data)
	}
	if bs.maxFields > maxRowFields {
		p.fail(notTable("a row has more than %d fields", maxRowFields))
		return
	}
	if cut == 0 {
		p.fail(notTable("no complete row in the first %d bytes", len(data)))
		return
	}
	an.lineTerm = "\n"
	if bs.crlf > bs.lf {
		an.lineTerm = "\r\n"
	}
	sample := data[:cut]
	an.encoding = "utf-8"
	if !utf8.Valid(sample) {
		an.encoding = "windows-1252"
	}
	if err := an.profile(sample, p.maxRows); err != nil {
		p.fail(err)
		return
	}
	p.phase = phaseCounting
	p.sc = csvScanner{delim: delim}
	if !final {
		p.count(data[cut:])
	}
}

func newCSVReader(b []byte, delim byte) *csv.Reader {
	r := csv.NewReader(bytes.NewReader(b))
	r.Comma = rune(delim)
	r.LazyQuotes = true
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	return r
}

// isBlank reports whether every field of rec is empty: a blank record such
// as ",,,,,", not counted as a row.
func isBlank(rec []string) bool {
	for _, f := range rec {
		if f != "" {
			return false
		}
	}
	return true
}

// modeOf returns the most frequent count in counts and its frequency; ties
// go to the larger count.
func modeOf(counts map[int]int) (mode, freq int) {
	for n, c := range counts {
		if c > freq || (c == freq && n > mode) {
			mode, freq = n, c
		}
	}
	return mode, freq
}

// detectDelimiter picks the delimiter among , ; tab | that splits the first
// records most consistently into two or more fields: most records sharing
// one field count, then more fields, then the order listed.
func detectDelimiter(data []byte) (byte, bool) {
	window := data[:min(len(data), delimWindow)]
	var best byte
	bestFreq, bestMode := 0, 0
	for _, d := range []byte{',', ';', '\t', '|'} {
		r := newCSVReader(window, d)
		counts := map[int]int{}
		for range delimRecords {
			rec, err := r.Read()
			if err != nil {
				break
			}
			if len(rec) >= 2 && !isBlank(rec) {
				counts[len(rec)]++
			}
		}
		mode, freq := modeOf(counts)
		if freq > bestFreq || (freq == bestFreq && freq > 0 && mode > bestMode) {
			best, bestFreq, bestMode = d, freq, mode
		}
	}
	return best, bestFreq > 0
}

// recordInfo is what header detection needs to know about a sample record.
type recordInfo struct {
	fields   int  // field count
	nonEmpty int  // fields with something other than spaces
	width    int  // fields up to the last non-empty one
	blank    bool // all fields empty
	text     bool // no non-empty field is a number, date, datetime or boolean
}

// profile finds the header in sample and infers the columns from the rows
// below it. It reads the sample twice so that it never holds more than one
// record at a time.
func (an *sampleProfile) profile(sample []byte, maxRows int) error {
	decode := func(s string) string { return s }
	if an.encoding != "utf-8" {
		decode = decodeWindows1252
	}

	// Pass 1: field counts, for the modal counts and the header search.
	var infos []recordInfo
	fieldCounts, widthCounts := map[int]int{}, map[int]int{}
	r := newCSVReader(sample, an.delim)
	for {
		rec, err := r.Read()
		if err != nil {
			break
		}
		info := recordInfo{fields: len(rec), blank: isBlank(rec)}
		for info.width = len(rec); info.width > 0 && strings.TrimSpace(rec[info.width-1]) == ""; info.width-- {
		}
		if !info.blank && len(rec) >= 2 {
			fieldCounts[len(rec)]++
		}
		if info.width >= 2 {
			widthCounts[info.width]++
		}
		if len(infos) < headerWindow {
			info.text = true
			for _, f := range rec[:info.width] {
				f = strings.TrimSpace(f)
				if f == "" {
					continue
				}
				info.nonEmpty++
				if info.text && !isText(decode(f)) {
					info.text = false
				}
			}
			infos = append(infos, info)
		}
	}
	modalFields, _ := modeOf(fieldCounts)
	modalWidth, _ := modeOf(widthCounts)
	h := findHeader(infos, modalFields, modalWidth)
	if h < 0 {
		return notTable("no header row found (no row with two or more non-empty cells)")
	}
	an.headerRow = h + 1

	// Pass 2: the header and the data rows below it.
	r = newCSVReader(sample, an.delim)
	for k := 0; ; k++ {
		rec, err := r.Read()
		if err != nil {
			break
		}
		switch {
		case k < h:
			continue
		case k == h:
			an.hdrFields = len(rec)
			for _, c := range rec[:min(len(rec), nii.MaxColumns)] {
				an.header = append(an.header, strings.Clone(c))
			}
			an.typers = make([]colTyper, len(an.header))
			for j := range an.typers {
				an.typers[j] = newColTyper()
			}
			continue
		case isBlank(rec):
			continue
		}
		an.dataRows++
		an.typeRow(rec, decode)
	}
	return nil
}

// typeRow feeds one data record to the column typers.
func (an *sampleProfile) typeRow(rec []string, decode func(string) string) {
	an.sampled++
	if len(rec) != an.hdrFields {
		an.ragged++
	}
	for j := range an.typers {
		if j >= len(rec) {
			an.typers[j].nulls++
			continue
		}
		raw := rec[j]
		v := trimLeftSpace(raw)
		if len(v) != len(raw) {
			an.initialSpace = true
		}
		if v != "" && an.encoding != "utf-8" {
			v = decode(v)
		}
		an.typers[j].add(v)
	}
}

// finishColumns names and types the columns once every row is typed.
// A column's Name is its header cell trimmed ("column_N" if blank); its
// Label the cell as a reader sees it, when that differs. Every header
// cell is a column, blank trailing ones included: a schema must have a
// field for each, or it does not describe the file.
func (an *sampleProfile) finishColumns() {
	decode := func(s string) string { return s }
	if an.encoding != "utf-8" {
		decode = decodeWindows1252
	}
	an.columns = make([]nii.Column, len(an.header))
	for j, c := range an.header {
		label := trimLeftSpace(decode(c))
		if label != decode(c) {
			an.initialSpace = true // a header cell starts with white space too
		}
		name := strings.TrimSpace(label)
		if name == "" {
			name = fmt.Sprintf("column_%d", j+1)
		}
		col := nii.Column{Name: name, Nulls: an.typers[j].nulls}
		if label != name {
			col.Label = &label
		}
		var currency bool
		col.Type, col.Format, col.GroupChar, currency, col.Note = an.typers[j].infer()
		col.Currency = currency
		an.columns[j] = col
	}
}

// findHeader returns the index of the header record, or -1. A header
// candidate has at least two non-empty cells, and at least 60% as many as
// the sample's modal width (its modal field count not counting trailing empty
// cells, of which some council files have dozens). The header is the first
// candidate that is all text (no numbers, dates or booleans, as a report's
// "Parameters" line or a data row has) and whose following rows mostly have
// the modal field count; failing that, the first all-text candidate, then the
// first consistent one, then the first candidate.
func findHeader(infos []recordInfo, modalFields, modalWidth int) int {
	candidate := func(k int) bool {
		ne := infos[k].nonEmpty
		return ne >= 2 && ne*10 >= modalWidth*6
	}
	consistent := func(k int) bool {
		seen, ok := 0, 0
		for j := k + 1; j < len(infos) && seen < headerLookahead; j++ {
			if infos[j].blank {
				continue
			}
			seen++
			if infos[j].fields == modalFields && infos[j].nonEmpty >= 2 {
				ok++
			}
		}
		return ok*10 >= seen*6
	}
	first, firstText, firstConsistent := -1, -1, -1
	for k := range infos {
		if !candidate(k) {
			continue
		}
		text, cons := infos[k].text, consistent(k)
		if text && cons {
			return k
		}
		if first < 0 {
			first = k
		}
		if text && firstText < 0 {
			firstText = k
		}
		if cons && firstConsistent < 0 {
			firstConsistent = k
		}
	}
	for _, k := range []int{firstText, firstConsistent} {
		if k >= 0 {
			return k
		}
	}
	return first
}

// cp1252 maps windows-1252 bytes 0x80–0x9F to Unicode; bytes 0xA0–0xFF are
// Latin-1. The five undefined bytes map to the C1 controls, as in WHATWG.
var cp1252 = [32]rune{
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
}

// decodeWindows1252 converts windows-1252 text to UTF-8.
func decodeWindows1252(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s) + 8)
	sb.WriteString(s[:i])
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x80:
			sb.WriteByte(c)
		case c < 0xA0:
			sb.WriteRune(cp1252[c-0x80])
		default:
			sb.WriteRune(rune(c))
		}
	}
	return sb.String()
}
