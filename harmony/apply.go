package harmony

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nii-uk/nii"
)

// Reject rules: why a row was rejected.
const (
	RuleFields   = "fields"   // the row's cell count differs from the header's and no repair fitted
	RuleCSV      = "csv"      // the row is not well-formed CSV
	RuleEncoding = "encoding" // the row is not in the mapping's encoding
	RuleCapture  = "capture"  // the capture expression did not match
	RuleType     = "type"     // the value does not fit the field's coercion (date format, money…)
	RuleRequired = "required"
	RuleEnum     = "enum"
	RuleMinimum  = "minimum"
	RuleMaximum  = "maximum"
	RulePattern  = "pattern"
	RuleLength   = "length"
	RuleUnique   = "unique"
	RulePrimary  = "primary-key"
)

// headerSearch is how many records the header is looked for in when the
// mapping gives no header_row.
const headerSearch = 200

// failure is one rule a row broke.
type failure struct {
	rule, field, reason, value string
}

// HeaderError says the file lacks a column the mapping names: it lists the
// file's headers and the nearest match.
type HeaderError struct {
	Field   string   // the standard field
	Wanted  []string // the aliases the mapping gives
	Headers []string // the file's header cells
	Nearest string   // the header closest to the first alias
	Record  int      // the header's record number, 0 if no header was found
}

func (e *HeaderError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mapping field %q: the file has no column headed %s", e.Field, quoteList(e.Wanted, " or "))
	if e.Record > 0 {
		fmt.Fprintf(&b, " (header at record %d)", e.Record)
	} else {
		b.WriteString(" (no record in the first 200 has every column the mapping names; the nearest is shown)")
	}
	fmt.Fprintf(&b, "; the file's headers are %s", quoteList(e.Headers, ", "))
	if e.Nearest != "" {
		fmt.Fprintf(&b, "; nearest match %q", e.Nearest)
	}
	b.WriteString(": add the file's header to the field's from list, or mark the field optional")
	return b.String()
}

// Unwrap makes a HeaderError an nii.ErrInvalid: the mapping does not fit
// the file.
func (e *HeaderError) Unwrap() error { return nii.ErrInvalid }

func quoteList(ss []string, sep string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, sep)
}

// headerKey is how header cells and aliases are compared: without regard to
// case, white space, underscores or a byte-order mark (including one that was
// itself re-encoded, "ï»¿").
func headerKey(s string) string {
	for {
		switch {
		case strings.HasPrefix(s, "\ufeff"):
			s = s[len("\ufeff"):]
			continue
		case strings.HasPrefix(s, "ï»¿"):
			s = s[len("ï»¿"):]
			continue
		case strings.HasPrefix(s, "\xef\xbb\xbf"):
			s = s[3:]
			continue
		}
		break
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsSpace(r) || r == '_' || r == '\ufeff' {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// nearest returns the element of among closest to s by edit distance on
// header keys, or "" if among is empty.
func nearest(s string, among []string) string {
	k := headerKey(s)
	best, bestD := "", -1
	for _, a := range among {
		if strings.TrimSpace(a) == "" {
			continue
		}
		d := editDistance(k, headerKey(a))
		if bestD < 0 || d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			c := prev[j-1]
			if ra[i-1] != rb[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// srcKind is where a compiled field's value comes from.
type srcKind uint8

const (
	srcNone srcKind = iota // not mapped: always empty
	srcColumn
	srcConst
	srcConcat
)

type compiledField struct {
	f       *Field
	fm      *FieldMapping
	src     srcKind
	col     int
	cols    []int
	konst   string
	missing []string // lowercased
	recode  map[string]string
	seen    map[string]int64 // unique: value → first line
}

// applier is a mapping bound to a standard and to one file's header.
type applier struct {
	std       *Standard
	m         *Mapping
	fields    []compiledField
	header    []string
	nCols     int
	footerCol int
	repairs   []compiledRepair
	decode    func(string) string
	pkSeen    map[string]int64
	pkIdx     []int
}

type compiledRepair struct {
	fields, col int
	re          *regexp.Regexp
}

// resolve finds the column for each header the mapping names.
func resolveHeader(header []string, name string) int {
	k := headerKey(name)
	for i, h := range header {
		if headerKey(h) == k {
			return i
		}
	}
	return -1
}

// newApplier compiles m against std and a header record. It returns a
// *HeaderError naming the first field whose column is not in the header.
func newApplier(std *Standard, m *Mapping, header []string, record int) (*applier, error) {
	a := &applier{std: std, m: m, header: header, nCols: len(header), footerCol: -1}
	a.decode = func(s string) string { return s }
	if m.Source.Encoding == "windows-1252" {
		a.decode = decodeWindows1252
	}
	missErr := func(field string, wanted []string) error {
		return &HeaderError{Field: field, Wanted: wanted, Headers: trimAll(header), Nearest: nearest(wanted[0], header), Record: record}
	}
	for i := range std.Fields {
		f := &std.Fields[i]
		cf := compiledField{f: f, fm: m.Fields[f.Name]}
		for _, t := range append(slicesClone(std.MissingValues), f.MissingValues...) {
			cf.missing = append(cf.missing, strings.ToLower(trimSpace(t)))
		}
		for _, t := range m.Source.Missing {
			cf.missing = append(cf.missing, strings.ToLower(trimSpace(t)))
		}
		if f.Unique {
			cf.seen = map[string]int64{}
		}
		fm := cf.fm
		if fm == nil {
			a.fields = append(a.fields, cf)
			continue
		}
		for _, t := range fm.Missing {
			cf.missing = append(cf.missing, strings.ToLower(trimSpace(t)))
		}
		if len(fm.Recode) > 0 {
			cf.recode = make(map[string]string, len(fm.Recode))
			for k, v := range fm.Recode {
				cf.recode[strings.ToLower(trimSpace(k))] = v
			}
		}
		switch {
		case fm.Const != nil:
			cf.src, cf.konst = srcConst, *fm.Const
		case fm.Index > 0:
			cf.src, cf.col = srcColumn, fm.Index-1
			if cf.col >= len(header) {
				if !fm.Optional {
					return nil, fmt.Errorf("mapping field %q: index = %d, but the header has %d columns", f.Name, fm.Index, len(header))
				}
				cf.src = srcNone
			}
		case len(fm.From) > 0:
			cf.src, cf.col = srcColumn, -1
			for _, alias := range fm.From {
				if c := resolveHeader(header, alias); c >= 0 {
					cf.col = c
					break
				}
			}
			if cf.col < 0 {
				if !fm.Optional {
					return nil, missErr(f.Name, fm.From)
				}
				cf.src = srcNone
			}
		case len(fm.Concat) > 0:
			cf.src = srcConcat
			for _, name := range fm.Concat {
				c := resolveHeader(header, name)
				if c < 0 {
					if fm.Optional {
						continue
					}
					return nil, missErr(f.Name, []string{name})
				}
				cf.cols = append(cf.cols, c)
			}
		}
		a.fields = append(a.fields, cf)
	}
	if ft := m.Source.Footer; ft != nil {
		if a.footerCol = resolveHeader(header, ft.Column); a.footerCol < 0 {
			return nil, missErr("(footer)", []string{ft.Column})
		}
	}
	for _, r := range m.Source.Repairs {
		c := resolveHeader(header, r.Column)
		if c < 0 {
			return nil, missErr("(repair)", []string{r.Column})
		}
		a.repairs = append(a.repairs, compiledRepair{fields: r.Fields, col: c, re: r.re})
	}
	if len(std.PrimaryKey) > 0 {
		a.pkSeen = map[string]int64{}
		for _, k := range std.PrimaryKey {
			for i := range std.Fields {
				if std.Fields[i].Name == k {
					a.pkIdx = append(a.pkIdx, i)
				}
			}
		}
	}
	return a, nil
}

// headerScore counts the fields whose columns rec has; ok is true when all
// the mapping needs are there.
func headerScore(m *Mapping, rec []string) (score int, ok bool) {
	ok = true
	for _, name := range m.fieldNames() {
		fm := m.Fields[name]
		var names []string
		switch {
		case len(fm.From) > 0:
			names = fm.From
		case len(fm.Concat) > 0:
			names = fm.Concat
		default:
			continue
		}
		found := false
		for _, n := range names {
			if resolveHeader(rec, n) >= 0 {
				found = true
				if len(fm.Concat) == 0 {
					break
				}
			} else if len(fm.Concat) > 0 && !fm.Optional {
				found = false
				break
			}
		}
		if found {
			score++
		} else if !fm.Optional {
			ok = false
		}
	}
	return score, ok
}

func trimAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = trimSpace(s)
	}
	return out
}

// fix repairs and pads rec to the header's width; ok false means it could
// not.
func (a *applier) fix(rec []string) ([]string, bool) {
	for _, r := range a.repairs {
		if len(rec) != r.fields || r.col >= len(rec) {
			continue
		}
		sub := r.re.FindStringSubmatch(rec[r.col])
		if sub == nil {
			continue
		}
		out := make([]string, 0, len(rec)+len(sub)-2)
		out = append(out, rec[:r.col]...)
		out = append(out, sub[1:]...)
		out = append(out, rec[r.col+1:]...)
		rec = out
		if len(rec) == a.nCols {
			return rec, true
		}
	}
	if len(rec) > a.nCols {
		for _, c := range rec[a.nCols:] {
			if trimSpace(c) != "" {
				return rec, false
			}
		}
		return rec[:a.nCols], true
	}
	if len(rec) < a.nCols && a.m.Source.PadShortRows {
		for len(rec) < a.nCols {
			rec = append(rec, "")
		}
		return rec, true
	}
	return rec, len(rec) == a.nCols
}

func (cf *compiledField) isMissing(s string) bool {
	if s == "" {
		return true
	}
	for _, t := range cf.missing {
		if len(t) == len(s) && strings.EqualFold(t, s) {
			return true
		}
	}
	return false
}

// raw returns the field's text from a row, before coercion.
func (cf *compiledField) raw(rec []string) string {
	switch cf.src {
	case srcColumn:
		return rec[cf.col]
	case srcConst:
		return cf.konst
	case srcConcat:
		var b strings.Builder
		for _, c := range cf.cols {
			p := trimSpace(rec[c])
			if p == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(cf.fm.Sep)
			}
			b.WriteString(p)
		}
		return b.String()
	}
	return ""
}

// mapRow maps one row (already the header's width) into out, one value per
// standard field, and appends every rule it breaks to fails.
func (a *applier) mapRow(rec []string, line int64, out []value, fails []failure) []failure {
	for i := range a.fields {
		cf := &a.fields[i]
		f := cf.f
		v, fail := cf.value(rec)
		if fail != nil {
			fails = append(fails, *fail)
			out[i] = nullValue
			continue
		}
		if v.null {
			if f.Required {
				fails = append(fails, failure{RuleRequired, f.Name, "required field " + f.Name + " is empty", cf.raw(rec)})
			}
			out[i] = v
			continue
		}
		if fail := checkConstraints(f, v); fail != nil {
			fails = append(fails, *fail)
		}
		if cf.seen != nil {
			key := v.format(f.kind)
			if first, dup := cf.seen[key]; dup {
				fails = append(fails, failure{RuleUnique, f.Name, fmt.Sprintf("%s %q is also on line %d", f.Name, key, first), key})
			} else {
				cf.seen[key] = line
			}
		}
		out[i] = v
	}
	if a.pkSeen != nil && len(fails) == 0 {
		var b strings.Builder
		for _, i := range a.pkIdx {
			b.WriteString(out[i].format(a.fields[i].f.kind))
			b.WriteByte(0)
		}
		key := b.String()
		if first, dup := a.pkSeen[key]; dup {
			fails = append(fails, failure{RulePrimary, strings.Join(a.std.PrimaryKey, ","), fmt.Sprintf("the primary key is also on line %d", first), ""})
		} else {
			a.pkSeen[key] = line
		}
	}
	return fails
}

// value extracts and coerces one field.
func (cf *compiledField) value(rec []string) (value, *failure) {
	f, fm := cf.f, cf.fm
	if cf.src == srcNone {
		return nullValue, nil
	}
	s := trimSpace(cf.raw(rec))
	raw := s
	if cf.isMissing(s) {
		s = ""
	}
	if s != "" && fm.Split != "" {
		parts := strings.Split(s, fm.Split)
		p := fm.Part
		if p < 0 {
			p = len(parts) + p + 1
		}
		if p >= 1 && p <= len(parts) {
			s = trimSpace(parts[p-1])
		} else {
			s = ""
		}
	}
	if s != "" && fm.capture != nil {
		sub := fm.capture.FindStringSubmatch(s)
		if sub == nil {
			return nullValue, &failure{RuleCapture, f.Name, fmt.Sprintf("%q does not match the capture %q", raw, fm.Capture), raw}
		}
		g := 1
		if i := fm.capture.SubexpIndex("v"); i > 0 {
			g = i
		}
		s = trimSpace(sub[g])
		if cf.isMissing(s) {
			s = ""
		}
	}
	if s == "" {
		if fm.Default == nil {
			return nullValue, nil
		}
		s = *fm.Default
	}
	if cf.recode != nil {
		if r, ok := cf.recode[strings.ToLower(s)]; ok {
			s = r
		}
	}
	var v value
	var err error
	switch f.kind {
	case kString:
		v.s = s
	case kNumber:
		form := fm.Number
		if form == "" {
			form = NumberPlain
		}
		v.n, err = ParseNumber(s, form)
		if errors.Is(err, errMissing) {
			return nullValue, nil
		}
	case kInteger, kYear:
		v.n, err = ParseInteger(s)
	case kBoolean:
		trues, falses := f.TrueValues, f.FalseValues
		if fm.TrueValues != nil {
			trues = fm.TrueValues
		}
		if fm.FalseValues != nil {
			falses = fm.FalseValues
		}
		v.n, err = parseBoolean(s, trues, falses)
	case kDate, kDatetime:
		v.n, err = cf.parseDate(s)
	}
	if err != nil {
		return nullValue, &failure{RuleType, f.Name, err.Error(), raw}
	}
	return v, nil
}

var isoDate, _ = ParseDateFormat("iso", 0)

func (cf *compiledField) parseDate(s string) (int64, error) {
	formats := cf.fm.dates
	if len(formats) == 0 {
		formats = []*DateFormat{isoDate}
	}
	var first error
	for _, df := range formats {
		d, secs, err := df.parse(s)
		if err == nil {
			if cf.f.kind == kDatetime {
				return d*86400 + secs, nil
			}
			return d, nil
		}
		if first == nil {
			first = err
		}
	}
	if len(formats) > 1 {
		return 0, fmt.Errorf("%q fits none of the date formats %s", s, quoteList(cf.fm.Date, ", "))
	}
	return 0, first
}

func checkConstraints(f *Field, v value) *failure {
	if f.enum != nil {
		ok := false
		for _, e := range f.enum {
			if e.null == v.null && e.compare(f.kind, v) == 0 && (f.kind != kString || e.s == v.s) {
				ok = true
				break
			}
		}
		if !ok {
			return &failure{RuleEnum, f.Name, fmt.Sprintf("%q is not one of %s", v.format(f.kind), quoteList(f.Enum, ", ")), v.format(f.kind)}
		}
	}
	if f.kind != kString {
		if f.min != nil && v.compare(f.kind, *f.min) < 0 {
			return &failure{RuleMinimum, f.Name, fmt.Sprintf("%s is below the minimum %s", v.format(f.kind), f.Minimum), v.format(f.kind)}
		}
		if f.max != nil && v.compare(f.kind, *f.max) > 0 {
			return &failure{RuleMaximum, f.Name, fmt.Sprintf("%s is above the maximum %s", v.format(f.kind), f.Maximum), v.format(f.kind)}
		}
	}
	if f.pattern != nil && !f.pattern.MatchString(v.format(f.kind)) {
		return &failure{RulePattern, f.Name, fmt.Sprintf("%q does not match the pattern %q", v.format(f.kind), f.Pattern), v.format(f.kind)}
	}
	if f.MinLength != nil || f.MaxLength != nil {
		n := utf8.RuneCountInString(v.s)
		if f.MinLength != nil && n < *f.MinLength {
			return &failure{RuleLength, f.Name, fmt.Sprintf("%q is shorter than %d characters", v.s, *f.MinLength), v.s}
		}
		if f.MaxLength != nil && n > *f.MaxLength {
			return &failure{RuleLength, f.Name, fmt.Sprintf("%q is longer than %d characters", v.s, *f.MaxLength), v.s}
		}
	}
	return nil
}

// rowSink receives each data row of a source as it is mapped.
type rowSink interface {
	accept(line int64, raw []string, vals []value) error
	reject(line int64, raw []string, fails []failure, vals []value) error
}

// RuleCount counts the rows that broke one rule on one field.
type RuleCount struct {
	Rule  string `json:"rule"`
	Field string `json:"field,omitempty"`
	Rows  int64  `json:"rows"`
	// Lines are the first source lines (1-based) that broke it.
	Lines []int64 `json:"lines"`
	// Examples are the first reasons given, with the values concerned.
	Examples []string `json:"examples"`
}

// Report is what applying a mapping to one file found. Accepted + Rejected
// = DataRows: no data row is dropped without a reason.
type Report struct {
	// HeaderRecord is the header's 1-based record number, HeaderLine its
	// line; Preamble counts the records above it.
	HeaderRecord int      `json:"header_record"`
	HeaderLine   int64    `json:"header_line"`
	Preamble     int      `json:"preamble"`
	Header       []string `json:"header"`
	// DataRows counts records below the header that are neither blank nor
	// footer lines.
	DataRows int64 `json:"data_rows"`
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	Blank    int64 `json:"blank"`
	Footer   int64 `json:"footer"`
	// Repaired counts rows mended by a [[source.repair]].
	Repaired int64 `json:"repaired"`
	// Failures counts rows by rule and field, most frequent first. A row
	// that breaks several rules is counted under each.
	Failures []RuleCount `json:"failures,omitempty"`
	// Warnings are plain-language findings, such as a coercion failing on
	// most rows.
	Warnings []string `json:"warnings,omitempty"`

	byRule map[[2]string]*RuleCount
}

// Score is the share of data rows accepted (1 when there are none).
func (r *Report) Score() float64 {
	if r.DataRows == 0 {
		return 1
	}
	return float64(r.Accepted) / float64(r.DataRows)
}

const (
	sampleLines    = 5
	sampleExamples = 3
)

func (r *Report) count(line int64, fails []failure) {
	if r.byRule == nil {
		r.byRule = map[[2]string]*RuleCount{}
	}
	done := map[[2]string]bool{}
	for _, f := range fails {
		k := [2]string{f.rule, f.field}
		if done[k] {
			continue
		}
		done[k] = true
		rc := r.byRule[k]
		if rc == nil {
			rc = &RuleCount{Rule: f.rule, Field: f.field}
			r.byRule[k] = rc
		}
		rc.Rows++
		if len(rc.Lines) < sampleLines {
			rc.Lines = append(rc.Lines, line)
		}
		if len(rc.Examples) < sampleExamples {
			rc.Examples = append(rc.Examples, fmt.Sprintf("line %d: %s", line, f.reason))
		}
	}
}

func (r *Report) finish() {
	r.Failures = r.Failures[:0]
	for _, rc := range r.byRule {
		r.Failures = append(r.Failures, *rc)
	}
	sort.Slice(r.Failures, func(i, j int) bool {
		a, b := r.Failures[i], r.Failures[j]
		if a.Rows != b.Rows {
			return a.Rows > b.Rows
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Field < b.Field
	})
	r.Warnings = nil
	for _, rc := range r.Failures {
		if r.DataRows == 0 || rc.Rows*2 <= r.DataRows {
			continue
		}
		pct := float64(rc.Rows) * 100 / float64(r.DataRows)
		what := "rule " + rc.Rule
		hint := ""
		switch rc.Rule {
		case RuleType:
			hint = ": the mapping's coercion does not fit this file's values; look at the examples and change the format"
		case RuleFields:
			hint = ": the file's rows do not have the header's cell count; check the delimiter and header_row, or add a [[source.repair]]"
		case RuleRequired:
			hint = ": the column is mostly empty; is from = naming the right column?"
		}
		ex := ""
		if len(rc.Examples) > 0 {
			ex = " (e.g. " + rc.Examples[0] + ")"
		}
		field := ""
		if rc.Field != "" {
			field = "field " + rc.Field + ": "
		}
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s%d of %d data rows (%.0f%%) fail %s%s%s", field, rc.Rows, r.DataRows, pct, what, ex, hint))
	}
}

// apply reads a CSV stream, maps every data row with m into std's fields and
// hands it to sink. It holds one row at a time.
func apply(ctx context.Context, r io.Reader, std *Standard, m *Mapping, sink rowSink) (*Report, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	if b, err := br.Peek(3); err == nil && string(b) == "\xef\xbb\xbf" {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.Comma = rune(m.Source.Delimiter[0])
	cr.LazyQuotes = true
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true

	rep := &Report{}
	var (
		a        *applier
		bestRec  []string
		bestScor = -1
		recNo    int
		vals     = make([]value, len(std.Fields))
		fails    []failure
		inFooter bool
		decoded  []string
	)
	for {
		if recNo%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		if err != nil && !errors.As(err, &pe) {
			return nil, fmt.Errorf("reading the source: %w", err)
		}
		line := 0
		if err == nil && len(rec) > 0 {
			line, _ = cr.FieldPos(0)
		}
		recNo++
		if a == nil {
			if err != nil {
				continue
			}
			hdr := make([]string, len(rec))
			dec := func(s string) string { return s }
			if m.Source.Encoding == "windows-1252" {
				dec = decodeWindows1252
			}
			for i, c := range rec {
				hdr[i] = dec(c)
			}
			switch {
			case m.Source.HeaderRow > 0 && recNo < m.Source.HeaderRow:
				rep.Preamble++
				continue
			case m.Source.HeaderRow > 0:
			default:
				score, ok := headerScore(m, hdr)
				if !ok {
					if score > bestScor {
						bestScor, bestRec = score, hdr
					}
					rep.Preamble++
					if recNo >= headerSearch {
						return nil, headerNotFound(std, m, bestRec)
					}
					continue
				}
			}
			if a, err = newApplier(std, m, hdr, recNo); err != nil {
				return nil, err
			}
			rep.HeaderRecord, rep.HeaderLine, rep.Header = recNo, int64(line), trimAll(hdr)
			continue
		}
		if err != nil {
			rep.DataRows++
			rep.Rejected++
			fl := []failure{{RuleCSV, "", "not well-formed CSV: " + pe.Err.Error(), ""}}
			rep.count(int64(pe.StartLine), fl)
			if err := sink.reject(int64(pe.StartLine), nil, fl, nil); err != nil {
				return nil, err
			}
			continue
		}
		blank := true
		for _, c := range rec {
			if trimSpace(c) != "" {
				blank = false
				break
			}
		}
		if blank {
			rep.Blank++
			continue
		}
		if inFooter {
			rep.Footer++
			continue
		}
		if a.footerCol >= 0 && a.footerCol < len(rec) && m.Source.Footer.re.MatchString(trimSpace(a.decode(rec[a.footerCol]))) {
			inFooter = true
			rep.Footer++
			continue
		}
		rep.DataRows++
		ln := int64(line)
		// decode, and check the encoding
		decoded = decoded[:0]
		badEnc := false
		for _, c := range rec {
			if m.Source.Encoding == "utf-8" {
				if !utf8.ValidString(c) {
					badEnc = true
				}
				decoded = append(decoded, c)
			} else {
				decoded = append(decoded, a.decode(c))
			}
		}
		if badEnc {
			fl := []failure{{RuleEncoding, "", "not valid UTF-8: the mapping says encoding = \"utf-8\"; if the file is Windows-1252, say encoding = \"windows-1252\"", ""}}
			rep.Rejected++
			rep.count(ln, fl)
			if err := sink.reject(ln, decoded, fl, nil); err != nil {
				return nil, err
			}
			continue
		}
		row, ok := a.fix(decoded)
		if !ok {
			fl := []failure{{RuleFields, "", fmt.Sprintf("the row has %d cells and the header %d, and no repair fits", len(row), a.nCols), ""}}
			rep.Rejected++
			rep.count(ln, fl)
			if err := sink.reject(ln, decoded, fl, nil); err != nil {
				return nil, err
			}
			continue
		}
		if len(row) != len(decoded) {
			rep.Repaired++
		}
		fails = a.mapRow(row, ln, vals, fails[:0])
		if len(fails) > 0 {
			rep.Rejected++
			rep.count(ln, fails)
			if err := sink.reject(ln, decoded, fails, vals); err != nil {
				return nil, err
			}
			continue
		}
		rep.Accepted++
		if err := sink.accept(ln, decoded, vals); err != nil {
			return nil, err
		}
	}
	if a == nil {
		if m.Source.HeaderRow > 0 {
			return nil, fmt.Errorf("the file has %d records, and the mapping says the header is record %d: fix header_row", recNo, m.Source.HeaderRow)
		}
		if bestRec == nil {
			return nil, fmt.Errorf("the file has no records: nothing to map")
		}
		return nil, headerNotFound(std, m, bestRec)
	}
	rep.finish()
	return rep, nil
}

// headerNotFound builds the HeaderError for the best header candidate.
func headerNotFound(std *Standard, m *Mapping, best []string) error {
	if _, err := newApplier(std, m, best, 0); err != nil {
		return err
	}
	return fmt.Errorf("no header row found in the first %d records: give header_row", headerSearch)
}

// countSink only counts.
type countSink struct{}

func (countSink) accept(int64, []string, []value) error            { return nil }
func (countSink) reject(int64, []string, []failure, []value) error { return nil }

// Check applies m to the CSV file r and reports rows accepted and rejected,
// counts by rule and field, and sample line numbers. It publishes and
// writes nothing. An error means the mapping cannot be applied to the file
// at all (a column it names is missing, a bad header_row); rows that do not
// fit are counted, not errors.
func Check(ctx context.Context, r io.Reader, std *Standard, m *Mapping) (*Report, error) {
	if err := m.Bind(std); err != nil {
		return nil, err
	}
	return apply(ctx, r, std, m, countSink{})
}
