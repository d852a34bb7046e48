package harmony

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"github.com/nii-uk/nii"
	profile "github.com/nii-uk/nii/registry/table"
)

// SuggestOptions tune Suggest.
type SuggestOptions struct {
	// Dataset is the dataset the mapping is for (its applies_to).
	Dataset nii.DatasetID
	// Defaults are constants for fields no column fits, such as the
	// publisher's name for body_name.
	Defaults map[string]string
}

// FieldSuggestion is one field Suggest mapped.
type FieldSuggestion struct {
	Field  string  `json:"field"`
	Column string  `json:"column,omitempty"` // "" for a constant
	Const  string  `json:"const,omitempty"`
	Score  float64 `json:"score"` // 1 for an exact header match
	// Coercion is the typed coercion chosen ("date = dd/mm/yyyy", "number = money").
	Coercion string `json:"coercion,omitempty"`
}

// Suggestion is a proposed mapping and what it could not do.
type Suggestion struct {
	TOML    []byte            `json:"-"`
	Mapping *Mapping          `json:"-"`
	Fields  []FieldSuggestion `json:"fields"`
	// Unmapped are standard fields no column fitted (required ones first).
	Unmapped []string `json:"unmapped"`
	// Unused are the file's columns no field took.
	Unused []string   `json:"unused"`
	Table  *nii.Table `json:"table"`
}

const (
	suggestBytes   = 8 << 20
	suggestRows    = 2000
	suggestMinimum = 0.4 // below this a header is not taken for a field
	fitShare       = 0.9 // share of a column's values a coercion must fit
)

// dateCandidates are the formats Suggest tries, most specific first.
var dateCandidates = []string{"iso", "dd/mm/yyyy", "dd-Mon-yyyy", "dd-mm-yyyy", "dd/mm/yy", "dd-Mon-yy", "dd.mm.yyyy",
	"yyyy-mm-dd HH:MI:SS", "dd/mm/yyyy HH:MI:SS", "dd/mm/yyyy HH:MI", "yyyymmdd"}

// Suggest proposes a mapping from a file's first rows to std: it finds the
// dialect and header with the table profiler, matches header names against
// each field's name, title and the headings its description lists, checks
// each match against the column's values (a date field needs a column whose
// values fit one date format, a number field one whose values are numbers or
// money), and picks the coercions those values fit. It says which fields it
// could not map and which columns it left unused. Only the first 8 MiB are
// read.
func Suggest(r io.Reader, std *Standard, opts SuggestOptions) (*Suggestion, error) {
	if std.Ref.Dataset == (nii.DatasetID{}) {
		return nil, fmt.Errorf("suggest: the standard has no reference: set Standard.Ref to the dataset it was published as")
	}
	buf, err := io.ReadAll(io.LimitReader(r, suggestBytes))
	if err != nil {
		return nil, fmt.Errorf("suggest: reading the file: %w", err)
	}
	if len(buf) == suggestBytes {
		if i := bytes.LastIndexByte(buf, '\n'); i > 0 {
			buf = buf[:i+1]
		}
	}
	table, err := profile.Profile(bytes.NewReader(buf))
	if err != nil {
		return nil, fmt.Errorf("suggest: %w", err)
	}
	header, cols := sampleColumns(buf, table)
	sug := &Suggestion{Table: table}

	type cand struct {
		field, col int
		score      float64
	}
	var cands []cand
	for fi := range std.Fields {
		f := &std.Fields[fi]
		aliases := fieldAliases(f)
		for ci, h := range header {
			if headerKey(h) == "" {
				continue
			}
			s := nameScore(h, aliases)
			if s < suggestMinimum || !cols[ci].fits(f) {
				continue
			}
			cands = append(cands, cand{fi, ci, s})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].score > cands[j].score })
	fieldCol := map[int]int{}
	colUsed := map[int]bool{}
	for _, c := range cands {
		if _, done := fieldCol[c.field]; done || colUsed[c.col] {
			continue
		}
		fieldCol[c.field] = c.col
		colUsed[c.col] = true
		sug.Fields = append(sug.Fields, FieldSuggestion{Field: std.Fields[c.field].Name, Column: trimSpace(header[c.col]), Score: c.score})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Proposed by nii map suggest: check it with nii map check before publishing.\n")
	fmt.Fprintf(&b, "standard = %s\n", tomlString(std.Ref.String()))
	applies := opts.Dataset.String()
	if opts.Dataset == (nii.DatasetID{}) {
		applies = "ORG/NAME"
	}
	fmt.Fprintf(&b, "applies_to = [%s]\n\n[source]\n", tomlString(applies))
	fmt.Fprintf(&b, "encoding = %s\n", tomlString(table.Encoding))
	if table.Delimiter != "," {
		fmt.Fprintf(&b, "delimiter = %s\n", tomlString(table.Delimiter))
	}
	if table.HeaderRow > 1 {
		fmt.Fprintf(&b, "header_row = %d  # %d record(s) above the header are skipped\n", table.HeaderRow, table.HeaderRow-1)
	}
	if tokens := missingTokens(cols); len(tokens) > 0 {
		q := make([]string, len(tokens))
		for i, t := range tokens {
			q[i] = tomlString(t)
		}
		fmt.Fprintf(&b, "missing = [%s]\n", strings.Join(q, ", "))
	}
	for i := range sug.Fields {
		fs := &sug.Fields[i]
		f := std.Field(fs.Field)
		col := cols[fieldCol[fieldIndex(std, fs.Field)]]
		fmt.Fprintf(&b, "\n[fields.%s]\nfrom = %s", fs.Field, tomlString(fs.Column))
		if fs.Score < 1 {
			fmt.Fprintf(&b, "  # a guess from the header's words (score %.2f)", fs.Score)
		}
		b.WriteString("\n")
		switch f.kind {
		case kDate, kDatetime:
			fs.Coercion = "date = " + col.date
			fmt.Fprintf(&b, "date = %s\n", tomlString(col.date))
			if strings.Contains(col.date, "yy") && !strings.Contains(col.date, "yyyy") {
				b.WriteString("pivot_year = 1950\n")
			}
		case kNumber:
			fs.Coercion = "number = " + string(col.number)
			fmt.Fprintf(&b, "number = %s\n", tomlString(string(col.number)))
		}
	}
	mapped := map[string]bool{}
	for _, fs := range sug.Fields {
		mapped[fs.Field] = true
	}
	var unmappedReq, unmappedOpt []string
	for i := range std.Fields {
		f := &std.Fields[i]
		if mapped[f.Name] {
			continue
		}
		if v, ok := opts.Defaults[f.Name]; ok {
			fmt.Fprintf(&b, "\n[fields.%s]\nconst = %s\n", f.Name, tomlString(v))
			sug.Fields = append(sug.Fields, FieldSuggestion{Field: f.Name, Const: v, Score: 1})
			continue
		}
		if f.Required {
			unmappedReq = append(unmappedReq, f.Name)
		} else {
			unmappedOpt = append(unmappedOpt, f.Name)
		}
	}
	sug.Unmapped = append(unmappedReq, unmappedOpt...)
	for ci, h := range header {
		if !colUsed[ci] && (trimSpace(h) != "" || cols[ci].nonEmpty > 0) {
			name := trimSpace(h)
			if name == "" {
				name = fmt.Sprintf("#%d (no header)", ci+1)
			}
			sug.Unused = append(sug.Unused, name)
		}
	}
	b.WriteString("\n")
	if len(unmappedReq) > 0 {
		fmt.Fprintf(&b, "# REQUIRED fields with no column: %s\n#   give each a [fields.NAME] with from = \"…\" or const = \"…\"; the mapping is refused until then.\n", strings.Join(unmappedReq, ", "))
	}
	if len(unmappedOpt) > 0 {
		fmt.Fprintf(&b, "# Optional fields with no column (left empty): %s\n", strings.Join(unmappedOpt, ", "))
	}
	if len(sug.Unused) > 0 {
		fmt.Fprintf(&b, "# Columns not used: %s\n", quoteList(sug.Unused, ", "))
	}
	if table.RaggedRows > 0 {
		fmt.Fprintf(&b, "# %d sampled rows have a different cell count from the header: see [[source.repair]] in docs/harmonisation.md\n", table.RaggedRows)
	}
	sug.TOML = []byte(b.String())
	m, err := ParseMapping(sug.TOML)
	if err != nil {
		return nil, fmt.Errorf("suggest: the proposed mapping does not parse (a bug): %w", err)
	}
	sug.Mapping = m
	return sug, nil
}

func fieldIndex(std *Standard, name string) int {
	for i := range std.Fields {
		if std.Fields[i].Name == name {
			return i
		}
	}
	return -1
}

// colSample is what Suggest learnt of a column's sampled values.
type colSample struct {
	nonEmpty int
	date     string     // the first date format ≥ 90% of values fit, or ""
	number   NumberForm // "plain" or "money" if ≥ 90% fit, or ""
	tokens   map[string]int
}

func (c *colSample) fits(f *Field) bool {
	switch f.kind {
	case kDate, kDatetime:
		return c.date != ""
	case kNumber, kInteger:
		return c.number != ""
	}
	return true
}

var missingCandidates = []string{"N/A", "#N/A", "n/a", "NA", "-", "NULL", "null"}

// missingTokens returns the missing-value tokens seen in the sample.
func missingTokens(cols []colSample) []string {
	seen := map[string]bool{}
	for _, c := range cols {
		for t := range c.tokens {
			if t != "-" || c.number == "" { // "-" in money columns is handled by money
				seen[strings.ToUpper(t)] = true
			}
		}
	}
	var out []string
	for t := range seen {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// sampleColumns parses the sample below the profiled header and classifies
// each column's values.
func sampleColumns(buf []byte, t *nii.Table) ([]string, []colSample) {
	buf = bytes.TrimPrefix(buf, []byte("\xef\xbb\xbf"))
	cr := csv.NewReader(bytes.NewReader(buf))
	cr.Comma = rune(t.Delimiter[0])
	cr.LazyQuotes = true
	cr.FieldsPerRecord = -1
	dec := func(s string) string { return s }
	if t.Encoding == "windows-1252" {
		dec = decodeWindows1252
	}
	var header []string
	var values [][]string
	for n := 1; len(values) < suggestRows; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			continue
		}
		if n < t.HeaderRow {
			continue
		}
		if n == t.HeaderRow {
			for _, c := range rec {
				header = append(header, dec(c))
			}
			continue
		}
		if len(rec) != len(header) {
			continue
		}
		row := make([]string, len(rec))
		for i, c := range rec {
			row[i] = trimSpace(dec(c))
		}
		values = append(values, row)
	}
	cols := make([]colSample, len(header))
	for ci := range cols {
		c := &cols[ci]
		c.tokens = map[string]int{}
		var vals []string
		for _, row := range values {
			v := row[ci]
			if v == "" {
				continue
			}
			isTok := false
			for _, t := range missingCandidates {
				if v == t {
					c.tokens[v]++
					isTok = true
				}
			}
			if !isTok {
				vals = append(vals, v)
			}
		}
		c.nonEmpty = len(vals)
		if len(vals) == 0 {
			continue
		}
		share := func(ok func(string) bool) bool {
			n := 0
			for _, v := range vals {
				if ok(v) {
					n++
				}
			}
			return float64(n) >= fitShare*float64(len(vals))
		}
		for _, d := range dateCandidates {
			df, err := ParseDateFormat(d, 1950)
			if err != nil {
				continue
			}
			if share(func(v string) bool { _, err := df.Parse(v); return err == nil }) {
				c.date = d
				break
			}
		}
		switch {
		case share(func(v string) bool { _, err := ParseNumber(v, NumberPlain); return err == nil }):
			c.number = NumberPlain
		case share(func(v string) bool { _, err := ParseNumber(v, NumberMoney); return err == nil }):
			c.number = NumberMoney
		}
		for t := range c.tokens {
			if c.tokens[t] < 2 {
				delete(c.tokens, t)
			}
		}
	}
	return header, cols
}

var quoted = regexp.MustCompile(`["“]([^"”]{1,60})["”]`)

// fieldAliases are the names a field may be published under: its name,
// title, and the quoted headings its description lists after "headings
// such as".
func fieldAliases(f *Field) []string {
	out := []string{f.Name, f.Title}
	desc := f.Description
	if i := strings.Index(strings.ToLower(desc), "headings such as"); i >= 0 {
		for _, m := range quoted.FindAllStringSubmatch(desc[i:], -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// words splits a header into lower-case words: at spaces, punctuation and
// camelCase boundaries ("DatePaid" → date, paid).
func words(s string) []string {
	var out []string
	var w []rune
	flush := func() {
		if len(w) > 0 {
			out = append(out, strings.ToLower(string(w)))
			w = w[:0]
		}
	}
	rs := []rune(s)
	for i, r := range rs {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if i > 0 && unicode.IsUpper(r) && unicode.IsLower(rs[i-1]) {
				flush()
			}
			w = append(w, r)
		default:
			flush()
		}
	}
	flush()
	return out
}

// nameScore rates how well a header matches a field's aliases: 1 for an
// exact match (case, spacing and BOMs aside), else the best word overlap
// (Jaccard) scaled to at most 0.8.
func nameScore(header string, aliases []string) float64 {
	hk := headerKey(header)
	hw := words(strings.TrimPrefix(strings.TrimPrefix(header, "\ufeff"), "ï»¿"))
	best := 0.0
	for _, a := range aliases {
		if a == "" {
			continue
		}
		if headerKey(a) == hk || headerKey(strings.ReplaceAll(a, "_", " ")) == hk {
			return 1
		}
		aw := words(strings.ReplaceAll(a, "_", " "))
		inter := 0
		for _, x := range hw {
			for _, y := range aw {
				if x == y {
					inter++
					break
				}
			}
		}
		union := len(hw) + len(aw) - inter
		if union > 0 {
			best = max(best, 0.8*float64(inter)/float64(union))
		}
	}
	return best
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
