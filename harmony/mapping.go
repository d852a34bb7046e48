package harmony

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/nii-uk/nii"
)

// MaxMappingSize bounds a mapping file.
const MaxMappingSize = 256 << 10

// A Mapping says, for each field of a standard, where its value comes from
// in one publisher's layout, and how the source's text becomes the field's
// type. It is written as TOML (docs/harmonisation.md has the grammar) and
// identified by Hash, the BLAKE3 hash of its canonical form, so reformatting
// or comments do not change it.
type Mapping struct {
	// Standard is the standard (and version) the mapping is for.
	Standard nii.Ref `json:"standard"`
	// AppliesTo are dataset patterns ("lambeth/spend", "lambeth/spend-*").
	AppliesTo   []string `json:"applies_to"`
	Title       string   `json:"title,omitempty"`
	Description string   `json:"description,omitempty"`
	Source      Dialect  `json:"source"`
	// Fields maps a standard field's name to where its value comes from.
	Fields map[string]*FieldMapping `json:"fields"`

	// Hash is the BLAKE3 hash of Canonical().
	Hash nii.Hash `json:"-"`
}

// Dialect is how the source file is laid out: everything about the file
// that is not a field.
type Dialect struct {
	// Encoding is "utf-8" (the default) or "windows-1252".
	Encoding string `json:"encoding"`
	// Delimiter is the field separator, one character (default ",").
	Delimiter string `json:"delimiter"`
	// HeaderRow is the 1-based record number of the header; records above
	// it (report titles, parameters) are skipped. 0: the header is the
	// first record in which every column the mapping names is found.
	HeaderRow int `json:"header_row,omitempty"`
	// Missing are tokens meaning "no value" in every column, matched after
	// trimming and without regard to case (the empty cell always is one).
	Missing []string `json:"missing,omitempty"`
	// PadShortRows accepts rows with fewer cells than the header, the
	// missing cells empty; otherwise such a row is rejected.
	PadShortRows bool `json:"pad_short_rows,omitempty"`
	// Footer, if set, ends the data: the first record whose cell under
	// Column matches it, and every record after, are footer lines (totals,
	// copyright notes), counted but not data.
	Footer *Footer `json:"footer,omitempty"`
	// Repairs fix rows whose cells were fused by the exporter.
	Repairs []Repair `json:"repair,omitempty"`
}

// Footer marks where the data ends.
type Footer struct {
	Column string `json:"column"`
	Match  string `json:"match"`
	re     *regexp.Regexp
}

// Repair splits one fused cell back into several: for a row with Fields
// cells, if the cell under Column matches Split, it is replaced by Split's
// capture groups. Lambeth's "25/06/2012900" (a date and an amount in one
// cell, so the row has 5 cells, not 6) is repaired this way.
type Repair struct {
	Fields int    `json:"fields"`
	Column string `json:"column"`
	Split  string `json:"split"`
	re     *regexp.Regexp
}

// FieldMapping is where one standard field's value comes from: a column
// (by header aliases or position), several columns concatenated, or a
// constant; then optional extraction (split, capture), recoding, and the
// typed coercion for the field's type.
type FieldMapping struct {
	// From are header aliases: the first one the file has is used.
	From []string `json:"from,omitempty"`
	// Index is a 1-based column position, for unnamed columns.
	Index int `json:"index,omitempty"`
	// Const is a constant value for every row.
	Const *string `json:"const,omitempty"`
	// Concat joins the named columns with Sep, skipping empty cells.
	Concat []string `json:"concat,omitempty"`
	Sep    string   `json:"sep,omitempty"`
	// Split cuts the value at each Split and keeps part Part (1-based;
	// negative counts from the end).
	Split string `json:"split,omitempty"`
	Part  int    `json:"part,omitempty"`
	// Capture is a regular expression; the value becomes its first capture
	// group (or the group named "v"). A value it does not match is a reject.
	Capture string `json:"capture,omitempty"`
	// Missing are extra "no value" tokens for this field.
	Missing []string `json:"missing,omitempty"`
	// Default replaces a missing value.
	Default *string `json:"default,omitempty"`
	// Recode replaces whole values (matched without regard to case):
	// {R = "Revenue", C = "Capital"}. Values not listed pass unchanged.
	Recode map[string]string `json:"recode,omitempty"`
	// Optional lets the column be absent from a file (the field is empty).
	Optional bool `json:"optional,omitempty"`

	// Typed coercions; only the one for the standard field's type may be set.
	// Date is one or more date formats, tried in order (for date and
	// datetime fields); PivotYear places two-digit years.
	Date      []string `json:"date,omitempty"`
	PivotYear int      `json:"pivot_year,omitempty"`
	// Number is "plain" (the default) or "money" (for number fields).
	Number NumberForm `json:"number,omitempty"`
	// TrueValues and FalseValues for boolean fields (default Table Schema's).
	TrueValues  []string `json:"true_values,omitempty"`
	FalseValues []string `json:"false_values,omitempty"`

	capture *regexp.Regexp
	dates   []*DateFormat
}

// tomlMapping is the file form: from and date may be a string or an array.
type tomlMapping struct {
	Standard    string                `toml:"standard"`
	AppliesTo   any                   `toml:"applies_to"`
	Title       string                `toml:"title"`
	Description string                `toml:"description"`
	Source      tomlDialect           `toml:"source"`
	Fields      map[string]*tomlField `toml:"fields"`
}

type tomlDialect struct {
	Encoding     string   `toml:"encoding"`
	Delimiter    string   `toml:"delimiter"`
	HeaderRow    int      `toml:"header_row"`
	Missing      []string `toml:"missing"`
	PadShortRows bool     `toml:"pad_short_rows"`
	Footer       *struct {
		Column string `toml:"column"`
		Match  string `toml:"match"`
	} `toml:"footer"`
	Repair []struct {
		Fields int    `toml:"fields"`
		Column string `toml:"column"`
		Split  string `toml:"split"`
	} `toml:"repair"`
}

type tomlField struct {
	From        any               `toml:"from"`
	Index       int               `toml:"index"`
	Const       *string           `toml:"const"`
	Concat      []string          `toml:"concat"`
	Sep         *string           `toml:"sep"`
	Split       string            `toml:"split"`
	Part        int               `toml:"part"`
	Capture     string            `toml:"capture"`
	Missing     []string          `toml:"missing"`
	Default     *string           `toml:"default"`
	Recode      map[string]string `toml:"recode"`
	Optional    bool              `toml:"optional"`
	Date        any               `toml:"date"`
	PivotYear   int               `toml:"pivot_year"`
	Number      string            `toml:"number"`
	TrueValues  []string          `toml:"true_values"`
	FalseValues []string          `toml:"false_values"`
}

// MappingError says why a mapping file is refused.
type MappingError struct {
	Field  string // the standard field concerned, if any
	Reason string
}

func (e *MappingError) Error() string {
	if e.Field == "" {
		return "mapping: " + e.Reason
	}
	return fmt.Sprintf("mapping: field %q: %s", e.Field, e.Reason)
}

// Unwrap makes a MappingError an nii.ErrInvalid.
func (e *MappingError) Unwrap() error { return nii.ErrInvalid }

func stringOrList(v any, what string) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{x}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: want a string or an array of strings", what)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: want a string or an array of strings", what)
}

// ParseMapping parses and checks a mapping file. It checks everything that
// does not need the standard or the source file: the standard reference, the
// dataset patterns, the dialect, that each field has exactly one source,
// that regular expressions and date formats compile. Bind checks it against
// a standard.
func ParseMapping(b []byte) (*Mapping, error) {
	if len(b) > MaxMappingSize {
		return nil, &MappingError{Reason: fmt.Sprintf("larger than %d bytes", MaxMappingSize)}
	}
	var tm tomlMapping
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&tm); err != nil {
		var sm *toml.StrictMissingError
		var de *toml.DecodeError
		switch {
		case errors.As(err, &sm):
			keys := make([]string, 0, len(sm.Errors))
			for _, e := range sm.Errors {
				keys = append(keys, strings.Join(e.Key(), "."))
			}
			return nil, &MappingError{Reason: "unknown keys " + strings.Join(keys, ", ") + " (docs/harmonisation.md lists the keys)"}
		case errors.As(err, &de):
			row, col := de.Position()
			return nil, &MappingError{Reason: fmt.Sprintf("TOML syntax at line %d column %d: %v", row, col, de)}
		}
		return nil, &MappingError{Reason: "not a TOML mapping: " + err.Error()}
	}
	m := &Mapping{Title: tm.Title, Description: tm.Description, Fields: map[string]*FieldMapping{}}
	if tm.Standard == "" {
		return nil, &MappingError{Reason: `no "standard": name the standard it maps to, e.g. standard = "lga/spend-over-500@1"`}
	}
	ref, err := nii.ParseRef(tm.Standard)
	if err != nil {
		return nil, &MappingError{Reason: "standard: " + err.Error()}
	}
	m.Standard = ref
	if m.AppliesTo, err = stringOrList(tm.AppliesTo, "applies_to"); err != nil {
		return nil, &MappingError{Reason: err.Error()}
	}
	if len(m.AppliesTo) == 0 {
		return nil, &MappingError{Reason: `no "applies_to": name the dataset or datasets it applies to, e.g. applies_to = ["lambeth/spend"]`}
	}
	for _, p := range m.AppliesTo {
		if err := nii.CheckPattern(p); err != nil {
			return nil, &MappingError{Reason: "applies_to: " + err.Error()}
		}
	}
	if err := m.Source.fromTOML(&tm.Source); err != nil {
		return nil, err
	}
	if len(tm.Fields) == 0 {
		return nil, &MappingError{Reason: "no [fields.NAME] tables: say where at least one field of the standard comes from"}
	}
	for name, tf := range tm.Fields {
		if tf == nil {
			return nil, &MappingError{Field: name, Reason: "empty"}
		}
		fm, err := tf.toField(name)
		if err != nil {
			return nil, err
		}
		m.Fields[name] = fm
	}
	m.Hash = nii.HashOf(m.Canonical())
	return m, nil
}

func (d *Dialect) fromTOML(td *tomlDialect) error {
	bad := func(format string, args ...any) error {
		return &MappingError{Reason: "[source] " + fmt.Sprintf(format, args...)}
	}
	d.Encoding = strings.ToLower(td.Encoding)
	switch d.Encoding {
	case "", "utf-8", "utf8":
		d.Encoding = "utf-8"
	case "windows-1252", "cp1252":
		d.Encoding = "windows-1252"
	default:
		return bad("encoding %q: want utf-8 or windows-1252", td.Encoding)
	}
	d.Delimiter = td.Delimiter
	if d.Delimiter == "" {
		d.Delimiter = ","
	}
	if d.Delimiter == `\t` {
		d.Delimiter = "\t"
	}
	if r := []rune(d.Delimiter); len(r) != 1 || r[0] == '"' || r[0] == '\r' || r[0] == '\n' || r[0] >= 0x80 {
		return bad("delimiter %q: want one ASCII character such as \",\", \";\" or \"\\t\"", td.Delimiter)
	}
	if td.HeaderRow < 0 || td.HeaderRow > 10_000 {
		return bad("header_row %d: want the header's record number, 1 to 10000", td.HeaderRow)
	}
	d.HeaderRow = td.HeaderRow
	d.Missing = td.Missing
	d.PadShortRows = td.PadShortRows
	if f := td.Footer; f != nil {
		re, err := regexp.Compile(f.Match)
		if err != nil || f.Column == "" || f.Match == "" {
			return bad("footer: want column = \"HEADER\" and match = a regular expression that compiles (%v)", err)
		}
		d.Footer = &Footer{Column: f.Column, Match: f.Match, re: re}
	}
	for i, r := range td.Repair {
		re, err := regexp.Compile(r.Split)
		if err != nil {
			return bad("repair %d: split %q does not compile: %v", i+1, r.Split, err)
		}
		if r.Fields < 1 || r.Column == "" || re.NumSubexp() < 2 {
			return bad("repair %d: want fields = N (the row's cell count), column = \"HEADER\" and split = a regular expression with two or more groups", i+1)
		}
		d.Repairs = append(d.Repairs, Repair{Fields: r.Fields, Column: r.Column, Split: r.Split, re: re})
	}
	return nil
}

func (tf *tomlField) toField(name string) (*FieldMapping, error) {
	bad := func(format string, args ...any) error {
		return &MappingError{Field: name, Reason: fmt.Sprintf(format, args...)}
	}
	fm := &FieldMapping{Index: tf.Index, Const: tf.Const, Concat: tf.Concat, Split: tf.Split, Part: tf.Part,
		Capture: tf.Capture, Missing: tf.Missing, Default: tf.Default, Recode: tf.Recode, Optional: tf.Optional,
		PivotYear: tf.PivotYear, Number: NumberForm(tf.Number), TrueValues: tf.TrueValues, FalseValues: tf.FalseValues}
	var err error
	if fm.From, err = stringOrList(tf.From, "from"); err != nil {
		return nil, bad("%v", err)
	}
	if fm.Date, err = stringOrList(tf.Date, "date"); err != nil {
		return nil, bad("%v", err)
	}
	sources := 0
	for _, set := range []bool{len(fm.From) > 0, fm.Index != 0, fm.Const != nil, len(fm.Concat) > 0} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, bad("give exactly one of from (header aliases), index (a column position), const or concat")
	}
	if tf.From != nil && len(fm.From) == 0 {
		return nil, bad("from is empty: list one or more header names")
	}
	for _, a := range append(slicesClone(fm.From), fm.Concat...) {
		if headerKey(a) == "" {
			return nil, bad("a header name is empty")
		}
	}
	if fm.Index < 0 || fm.Index > nii.MaxColumns {
		return nil, bad("index %d: want a column position from 1", fm.Index)
	}
	if tf.Sep != nil {
		if len(fm.Concat) == 0 {
			return nil, bad("sep is for concat")
		}
		fm.Sep = *tf.Sep
	} else if len(fm.Concat) > 0 {
		fm.Sep = " "
	}
	if fm.Split == "" && fm.Part != 0 {
		return nil, bad("part is for split")
	}
	if fm.Split != "" && fm.Part == 0 {
		return nil, bad("split needs part, the 1-based piece to keep (negative counts from the end)")
	}
	if fm.Capture != "" {
		re, err := regexp.Compile(fm.Capture)
		if err != nil {
			return nil, bad("capture %q does not compile: %v", fm.Capture, err)
		}
		if re.NumSubexp() < 1 {
			return nil, bad("capture %q has no group: put the part to keep in ( )", fm.Capture)
		}
		fm.capture = re
	}
	for _, d := range fm.Date {
		df, err := ParseDateFormat(d, fm.PivotYear)
		if err != nil {
			return nil, bad("%v", err)
		}
		fm.dates = append(fm.dates, df)
	}
	if tf.Date != nil && len(fm.Date) == 0 {
		return nil, bad("date is empty: give one or more formats")
	}
	if fm.PivotYear != 0 && len(fm.Date) == 0 {
		return nil, bad("pivot_year is for date formats with yy")
	}
	switch fm.Number {
	case "", NumberPlain, NumberMoney:
	default:
		return nil, bad("number %q: want plain or money", fm.Number)
	}
	return fm, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// AppliesToDataset reports whether the mapping names d in applies_to.
func (m *Mapping) AppliesToDataset(d nii.DatasetID) bool { return nii.MatchDataset(m.AppliesTo, d) }

// Canonical returns the mapping's canonical form: compact JSON of the
// parsed mapping with keys in a fixed order. Its hash is the mapping's Hash.
func (m *Mapping) Canonical() []byte {
	type canon struct {
		Standard    string                   `json:"standard"`
		AppliesTo   []string                 `json:"applies_to"`
		Title       string                   `json:"title,omitempty"`
		Description string                   `json:"description,omitempty"`
		Source      Dialect                  `json:"source"`
		Fields      map[string]*FieldMapping `json:"fields"`
	}
	b, err := json.Marshal(canon{m.Standard.String(), m.AppliesTo, m.Title, m.Description, m.Source, m.Fields})
	if err != nil {
		panic("harmony: canonical mapping: " + err.Error()) // only plain data: cannot happen
	}
	return b
}

// fieldNames returns the mapping's field names in order.
func (m *Mapping) fieldNames() []string {
	names := make([]string, 0, len(m.Fields))
	for n := range m.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Bind checks the mapping against std: it is for this standard, every
// field it maps is one of the standard's, each coercion fits its field's
// type, and every required field of the standard has a source. All problems
// are reported together.
func (m *Mapping) Bind(std *Standard) error {
	var probs []string
	if m.Standard.Dataset != std.Ref.Dataset && std.Ref.Dataset != (nii.DatasetID{}) {
		probs = append(probs, fmt.Sprintf("it is for %s, not %s", m.Standard, std.Ref))
	} else if std.Ref.Version != 0 && m.Standard.Version != 0 && std.Ref.Version != m.Standard.Version {
		probs = append(probs, fmt.Sprintf("it is for version %d of %s, not version %d: update standard = in the mapping after checking it against the new version", m.Standard.Version, m.Standard.Dataset, std.Ref.Version))
	}
	for _, name := range m.fieldNames() {
		fm := m.Fields[name]
		f := std.Field(name)
		if f == nil {
			probs = append(probs, fmt.Sprintf("field %q is not in the standard %s%s", name, std.Ref, nearestHint(name, fieldNameList(std))))
			continue
		}
		if len(fm.Date) > 0 && f.kind != kDate && f.kind != kDatetime {
			probs = append(probs, fmt.Sprintf("field %q is a %s in the standard; date = is for date and datetime fields", name, f.Type))
		}
		if fm.Number != "" && f.kind != kNumber {
			probs = append(probs, fmt.Sprintf("field %q is a %s in the standard; number = is for number fields", name, f.Type))
		}
		if (fm.TrueValues != nil || fm.FalseValues != nil) && f.kind != kBoolean {
			probs = append(probs, fmt.Sprintf("field %q is a %s in the standard; true_values/false_values are for boolean fields", name, f.Type))
		}
	}
	for i := range std.Fields {
		f := &std.Fields[i]
		if fm := m.Fields[f.Name]; f.Required && (fm == nil || fm.Optional) {
			if fm == nil {
				probs = append(probs, fmt.Sprintf("the standard requires field %q and the mapping gives it no source", f.Name))
			} else {
				probs = append(probs, fmt.Sprintf("the standard requires field %q, so it cannot be optional", f.Name))
			}
		}
	}
	if len(probs) > 0 {
		return &MappingError{Reason: "does not fit the standard: " + strings.Join(probs, "; ")}
	}
	return nil
}

func fieldNameList(std *Standard) []string {
	out := make([]string, len(std.Fields))
	for i := range std.Fields {
		out[i] = std.Fields[i].Name
	}
	return out
}

func nearestHint(s string, among []string) string {
	if n := nearest(s, among); n != "" {
		return fmt.Sprintf(" (did you mean %q?)", n)
	}
	return ""
}

// IdentityMapping returns the mapping a dataset that conforms to std
// directly (its metadata's conforms_to names std, and it has no mapping of
// its own) is read with: each field from the column headed with its name
// (or title), in Table Schema's own forms (ISO dates, plain numbers), the
// fields the standard does not require optional. The result is bound to
// std and applies to d.
func IdentityMapping(std *Standard, d nii.DatasetID) (*Mapping, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "standard = %q\napplies_to = [%q]\ntitle = %q\n", std.Ref.String(), d.String(), "identity mapping of "+std.Ref.String())
	for i := range std.Fields {
		f := &std.Fields[i]
		from := []string{f.Name}
		if f.Title != "" && headerKey(f.Title) != headerKey(f.Name) {
			from = append(from, f.Title)
		}
		fmt.Fprintf(&b, "\n[fields.%q]\nfrom = [", f.Name)
		for j, a := range from {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", a)
		}
		b.WriteString("]\n")
		if !f.Required {
			b.WriteString("optional = true\n")
		}
	}
	m, err := ParseMapping([]byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("identity mapping of %s: %w", std.Ref, err)
	}
	if err := m.Bind(std); err != nil {
		return nil, fmt.Errorf("identity mapping of %s: %w", std.Ref, err)
	}
	return m, nil
}
