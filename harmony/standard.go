package harmony

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
)

// A Standard is a Frictionless Table Schema (v2) that names the fields a
// merged table has: their types, formats, constraints, missing values and a
// description each. It is published as an ordinary nii dataset whose
// metadata marks it as a standard; Ref and Hash identify that publication.
type Standard struct {
	Name        string
	Title       string
	Description string
	Fields      []Field
	// MissingValues are the schema's missing-value tokens (default [""]).
	MissingValues []string
	PrimaryKey    []string

	// Ref is the dataset version the standard was published as
	// (lga/spend-over-500@1). ParseStandard leaves it zero; the caller sets
	// it. A mapping names the standard it is for by this reference.
	Ref nii.Ref
	// Hash is the BLAKE3 hash of the bytes the standard was parsed from.
	Hash nii.Hash

	raw []byte
}

// Field is one field of a standard.
type Field struct {
	Name        string
	Title       string
	Description string
	// Type is the Table Schema type (string, number, integer, boolean,
	// date, datetime, year, …; default "any").
	Type   string
	Format string
	// Role is the field's "nii:role", a custom property that tells the
	// merge which field holds the row's date ("date"), amount ("amount")
	// and counterparty ("supplier", whose normalised name is added).
	Role          string
	Required      bool
	Unique        bool
	Enum          []string
	Pattern       string
	MinLength     *int
	MaxLength     *int
	Minimum       string
	Maximum       string
	MissingValues []string // nil: the schema's
	TrueValues    []string
	FalseValues   []string

	kind    kind
	enum    []value
	pattern *regexp.Regexp
	min     *value
	max     *value
}

// Roles a standard's fields may carry in "nii:role".
const (
	RoleDate     = "date"
	RoleAmount   = "amount"
	RoleSupplier = "supplier"
)

// MaxStandardSize bounds the schema JSON a standard is parsed from.
const MaxStandardSize = 1 << 20

// Table Schema v2 types and the formats each allows ("" and "default" are
// always allowed; nil means any pattern is allowed).
var schemaTypes = map[string][]string{
	"string":    {"email", "uri", "binary", "uuid"},
	"number":    {},
	"integer":   {},
	"boolean":   {},
	"object":    {},
	"array":     {},
	"list":      {},
	"date":      nil,
	"time":      nil,
	"datetime":  nil,
	"year":      {},
	"yearmonth": {},
	"duration":  {},
	"geopoint":  {"array", "object"},
	"geojson":   {"topojson"},
	"any":       {},
}

// jsonSchema is the wire form; constraint values stay raw until checked
// against the field's type.
type jsonSchema struct {
	Schema        string            `json:"$schema"`
	Name          string            `json:"name"`
	Title         string            `json:"title"`
	Description   string            `json:"description"`
	Fields        []json.RawMessage `json:"fields"`
	MissingValues json.RawMessage   `json:"missingValues"`
	PrimaryKey    json.RawMessage   `json:"primaryKey"`
	UniqueKeys    json.RawMessage   `json:"uniqueKeys"`
	ForeignKeys   json.RawMessage   `json:"foreignKeys"`
	FieldsMatch   string            `json:"fieldsMatch"`
}

type jsonField struct {
	Name          *string                    `json:"name"`
	Title         string                     `json:"title"`
	Description   string                     `json:"description"`
	Type          string                     `json:"type"`
	Format        string                     `json:"format"`
	Role          string                     `json:"nii:role"`
	Constraints   map[string]json.RawMessage `json:"constraints"`
	MissingValues json.RawMessage            `json:"missingValues"`
	TrueValues    []string                   `json:"trueValues"`
	FalseValues   []string                   `json:"falseValues"`
}

// SchemaError says why bytes are not a valid Table Schema.
type SchemaError struct {
	Field  string // "" for the schema as a whole
	Reason string
}

func (e *SchemaError) Error() string {
	if e.Field == "" {
		return "not a valid Table Schema: " + e.Reason
	}
	return fmt.Sprintf("not a valid Table Schema: field %q: %s", e.Field, e.Reason)
}

// Unwrap makes a SchemaError an nii.ErrInvalid.
func (e *SchemaError) Unwrap() error { return nii.ErrInvalid }

// ParseStandard parses and validates a Table Schema. A schema that is not
// valid (unknown types or formats, duplicate or empty field names,
// constraints that do not fit the field's type, a primary key naming no
// field, a pattern that does not compile…) is refused with a *SchemaError
// saying which field and why.
func ParseStandard(b []byte) (*Standard, error) {
	if len(b) > MaxStandardSize {
		return nil, &SchemaError{Reason: fmt.Sprintf("larger than %d bytes", MaxStandardSize)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var js jsonSchema
	if err := dec.Decode(&js); err != nil {
		return nil, &SchemaError{Reason: "not a JSON object: " + err.Error()}
	}
	if dec.More() {
		return nil, &SchemaError{Reason: "trailing data after the JSON object"}
	}
	s := &Standard{Name: js.Name, Title: js.Title, Description: js.Description, Hash: nii.HashOf(b), raw: bytes.Clone(b)}
	if js.Fields == nil {
		return nil, &SchemaError{Reason: `no "fields" array`}
	}
	if len(js.Fields) == 0 {
		return nil, &SchemaError{Reason: `"fields" is empty: a standard needs at least one field`}
	}
	if len(js.Fields) > nii.MaxColumns {
		return nil, &SchemaError{Reason: fmt.Sprintf("more than %d fields", nii.MaxColumns)}
	}
	switch js.FieldsMatch {
	case "", "exact", "equal", "subset", "superset", "partial":
	default:
		return nil, &SchemaError{Reason: fmt.Sprintf("fieldsMatch %q: want exact, equal, subset, superset or partial", js.FieldsMatch)}
	}
	mv, err := parseMissingValues(js.MissingValues)
	if err != nil {
		return nil, &SchemaError{Reason: "missingValues: " + err.Error()}
	}
	if mv == nil {
		mv = []string{""}
	}
	s.MissingValues = mv
	names := map[string]bool{}
	roles := map[string]string{}
	for i, raw := range js.Fields {
		f, err := parseField(raw)
		if err != nil {
			if se, ok := err.(*SchemaError); ok && se.Field == "" {
				se.Field = fmt.Sprintf("#%d", i+1)
			}
			return nil, err
		}
		if names[f.Name] {
			return nil, &SchemaError{Field: f.Name, Reason: "the name is used by two fields"}
		}
		names[f.Name] = true
		if f.Role != "" {
			if other, ok := roles[f.Role]; ok {
				return nil, &SchemaError{Field: f.Name, Reason: fmt.Sprintf("nii:role %q is already given to %q", f.Role, other)}
			}
			roles[f.Role] = f.Name
		}
		s.Fields = append(s.Fields, *f)
	}
	if len(js.PrimaryKey) > 0 && string(js.PrimaryKey) != "null" {
		var one string
		if json.Unmarshal(js.PrimaryKey, &one) == nil {
			s.PrimaryKey = []string{one}
		} else if err := json.Unmarshal(js.PrimaryKey, &s.PrimaryKey); err != nil {
			return nil, &SchemaError{Reason: "primaryKey: want a field name or an array of field names"}
		}
		for _, k := range s.PrimaryKey {
			if !names[k] {
				return nil, &SchemaError{Reason: fmt.Sprintf("primaryKey names %q, which is not a field", k)}
			}
		}
	}
	for _, keys := range []struct {
		what string
		raw  json.RawMessage
	}{{"uniqueKeys", js.UniqueKeys}} {
		if len(keys.raw) == 0 || string(keys.raw) == "null" {
			continue
		}
		var sets [][]string
		if err := json.Unmarshal(keys.raw, &sets); err != nil {
			return nil, &SchemaError{Reason: keys.what + ": want an array of arrays of field names"}
		}
		for _, set := range sets {
			for _, k := range set {
				if !names[k] {
					return nil, &SchemaError{Reason: fmt.Sprintf("%s names %q, which is not a field", keys.what, k)}
				}
			}
		}
	}
	if len(js.ForeignKeys) > 0 && string(js.ForeignKeys) != "null" {
		var fks []json.RawMessage
		if err := json.Unmarshal(js.ForeignKeys, &fks); err != nil {
			return nil, &SchemaError{Reason: "foreignKeys: want an array"}
		}
	}
	return s, nil
}

func parseMissingValues(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var ss []string
	if err := json.Unmarshal(raw, &ss); err == nil {
		return ss, nil
	}
	var objs []struct {
		Value *string `json:"value"`
	}
	if err := json.Unmarshal(raw, &objs); err != nil {
		return nil, fmt.Errorf("want an array of strings or of {\"value\": …} objects")
	}
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		if o.Value == nil {
			return nil, fmt.Errorf("an entry has no \"value\"")
		}
		out = append(out, *o.Value)
	}
	return out, nil
}

var knownConstraints = map[string]bool{
	"required": true, "unique": true, "minLength": true, "maxLength": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true,
	"pattern": true, "enum": true, "jsonSchema": true,
}

func parseField(raw json.RawMessage) (*Field, error) {
	var jf jsonField
	if err := json.Unmarshal(raw, &jf); err != nil {
		return nil, &SchemaError{Reason: "not a field object: " + err.Error()}
	}
	if jf.Name == nil || *jf.Name == "" {
		return nil, &SchemaError{Reason: `a field has no "name"`}
	}
	f := &Field{Name: *jf.Name, Title: jf.Title, Description: jf.Description, Type: jf.Type, Format: jf.Format,
		Role: jf.Role, TrueValues: jf.TrueValues, FalseValues: jf.FalseValues}
	bad := func(format string, args ...any) error {
		return &SchemaError{Field: f.Name, Reason: fmt.Sprintf(format, args...)}
	}
	if len(f.Name) > 256 || strings.ContainsAny(f.Name, "\r\n\x00") {
		return nil, bad("the name is longer than 256 bytes or has a line break")
	}
	if f.Type == "" {
		f.Type = "any"
	}
	formats, ok := schemaTypes[f.Type]
	if !ok {
		return nil, bad("type %q is not a Table Schema type (string, number, integer, boolean, date, datetime, time, year, yearmonth, duration, geopoint, geojson, object, array, list, any)", f.Type)
	}
	if f.Format != "" && f.Format != "default" {
		switch {
		case formats == nil: // date, time, datetime: "any" or a strptime pattern
		case f.Type == "string" || f.Type == "geopoint" || f.Type == "geojson":
			found := false
			for _, x := range formats {
				found = found || x == f.Format
			}
			if !found {
				return nil, bad("format %q is not one of %q for type %s", f.Format, formats, f.Type)
			}
		default:
			return nil, bad("type %s takes no format (got %q)", f.Type, f.Format)
		}
	}
	switch f.Role {
	case "", RoleSupplier:
	case RoleDate:
		if f.Type != "date" && f.Type != "datetime" {
			return nil, bad("nii:role date wants a date or datetime field, not %s", f.Type)
		}
	case RoleAmount:
		if f.Type != "number" && f.Type != "integer" {
			return nil, bad("nii:role amount wants a number or integer field, not %s", f.Type)
		}
	default:
		return nil, bad("nii:role %q: want date, amount or supplier", f.Role)
	}
	if f.Role == RoleSupplier && f.Type != "string" {
		return nil, bad("nii:role supplier wants a string field, not %s", f.Type)
	}
	mv, err := parseMissingValues(jf.MissingValues)
	if err != nil {
		return nil, bad("missingValues: %v", err)
	}
	f.MissingValues = mv
	if f.Type == "boolean" {
		if f.TrueValues == nil {
			f.TrueValues = defaultTrue
		}
		if f.FalseValues == nil {
			f.FalseValues = defaultFalse
		}
	} else if jf.TrueValues != nil || jf.FalseValues != nil {
		return nil, bad("trueValues and falseValues are for boolean fields")
	}
	f.kind = kindOf(f.Type)
	if f.kind == kString && f.Type != "string" && f.Type != "any" {
		// carried as text: constraints other than required/enum/pattern/length are not checked
		f.kind = kString
	}
	keys := make([]string, 0, len(jf.Constraints))
	for k := range jf.Constraints {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !knownConstraints[k] {
			return nil, bad("unknown constraint %q (Table Schema has required, unique, minLength, maxLength, minimum, maximum, exclusiveMinimum, exclusiveMaximum, pattern, enum, jsonSchema)", k)
		}
	}
	c := jf.Constraints
	boolC := func(name string, dst *bool) error {
		if r, ok := c[name]; ok {
			if err := json.Unmarshal(r, dst); err != nil {
				return bad("constraint %s: want true or false", name)
			}
		}
		return nil
	}
	if err := boolC("required", &f.Required); err != nil {
		return nil, err
	}
	if err := boolC("unique", &f.Unique); err != nil {
		return nil, err
	}
	for _, lc := range []struct {
		name string
		dst  **int
	}{{"minLength", &f.MinLength}, {"maxLength", &f.MaxLength}} {
		r, ok := c[lc.name]
		if !ok {
			continue
		}
		switch f.Type {
		case "string", "array", "list", "object", "any":
		default:
			return nil, bad("constraint %s does not apply to type %s", lc.name, f.Type)
		}
		var n int
		if err := json.Unmarshal(r, &n); err != nil || n < 0 {
			return nil, bad("constraint %s: want a whole number ≥ 0", lc.name)
		}
		*lc.dst = &n
	}
	if f.MinLength != nil && f.MaxLength != nil && *f.MinLength > *f.MaxLength {
		return nil, bad("minLength %d is above maxLength %d", *f.MinLength, *f.MaxLength)
	}
	ordered := map[string]bool{"number": true, "integer": true, "date": true, "datetime": true, "year": true, "time": true, "yearmonth": true, "duration": true}
	bounds := []struct {
		name      string
		exclusive bool
		dst       **value
		text      *string
	}{
		{"minimum", false, &f.min, &f.Minimum}, {"maximum", false, &f.max, &f.Maximum},
		{"exclusiveMinimum", true, &f.min, &f.Minimum}, {"exclusiveMaximum", true, &f.max, &f.Maximum},
	}
	for _, b := range bounds {
		r, ok := c[b.name]
		if !ok {
			continue
		}
		if !ordered[f.Type] {
			return nil, bad("constraint %s does not apply to type %s", b.name, f.Type)
		}
		v, lex, err := constraintValue(f, r)
		if err != nil {
			return nil, bad("constraint %s: %v", b.name, err)
		}
		if b.exclusive && f.kind != kString {
			// store as an inclusive bound one step inside
			if strings.HasPrefix(b.name, "exclusiveMin") {
				v.n++
			} else {
				v.n--
			}
		}
		if *b.dst != nil {
			return nil, bad("both %s and its exclusive or inclusive twin are given", b.name)
		}
		*b.dst, *b.text = &v, lex
	}
	if f.min != nil && f.max != nil && f.kind != kString && f.min.compare(f.kind, *f.max) > 0 {
		return nil, bad("minimum %s is above maximum %s", f.Minimum, f.Maximum)
	}
	if r, ok := c["pattern"]; ok {
		if err := json.Unmarshal(r, &f.Pattern); err != nil {
			return nil, bad("constraint pattern: want a string")
		}
		re, err := regexp.Compile(`^(?:` + f.Pattern + `)$`)
		if err != nil {
			return nil, bad("constraint pattern %q does not compile: %v", f.Pattern, err)
		}
		f.pattern = re
	}
	if r, ok := c["enum"]; ok {
		var items []json.RawMessage
		if err := json.Unmarshal(r, &items); err != nil || len(items) == 0 {
			return nil, bad("constraint enum: want a non-empty array")
		}
		for _, it := range items {
			v, lex, err := constraintValue(f, it)
			if err != nil {
				return nil, bad("constraint enum: %v", err)
			}
			f.enum = append(f.enum, v)
			f.Enum = append(f.Enum, lex)
		}
	}
	if r, ok := c["jsonSchema"]; ok {
		if f.Type != "object" && f.Type != "array" {
			return nil, bad("constraint jsonSchema applies to object and array fields")
		}
		var obj map[string]any
		if err := json.Unmarshal(r, &obj); err != nil {
			return nil, bad("constraint jsonSchema: want an object")
		}
	}
	return f, nil
}

// constraintValue reads a constraint's value (minimum, maximum, an enum
// item) in the field's type: a JSON number or its lexical string form.
func constraintValue(f *Field, r json.RawMessage) (value, string, error) {
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		var num json.Number
		d := json.NewDecoder(bytes.NewReader(r))
		d.UseNumber()
		if err := d.Decode(&num); err == nil {
			s = num.String()
		} else {
			var b bool
			if err := json.Unmarshal(r, &b); err != nil {
				return value{}, "", fmt.Errorf("%s is not a %s value", r, f.Type)
			}
			s = strconv.FormatBool(b)
		}
	}
	v, err := lexicalValue(f, s)
	if err != nil {
		return value{}, "", err
	}
	return v, s, nil
}

// lexicalValue parses s in Table Schema's default lexical form for f's type.
func lexicalValue(f *Field, s string) (value, error) {
	var v value
	var err error
	switch f.kind {
	case kString:
		v.s = s
	case kNumber:
		v.n, err = ParseNumber(s, NumberPlain)
	case kInteger:
		v.n, err = ParseInteger(s)
	case kYear:
		v.n, err = ParseInteger(s)
	case kBoolean:
		v.n, err = parseBoolean(s, f.TrueValues, f.FalseValues)
	case kDate:
		var t time.Time
		t, err = time.Parse(time.DateOnly, s)
		v.n = int64(t.Sub(epoch) / (24 * time.Hour))
	case kDatetime:
		var t time.Time
		t, err = time.Parse(time.RFC3339, s)
		v.n = t.Unix()
	}
	if err != nil {
		return value{}, fmt.Errorf("%q is not a %s in Table Schema's default form", s, f.Type)
	}
	return v, nil
}

// Bytes returns the schema's JSON as it was parsed.
func (s *Standard) Bytes() []byte { return bytes.Clone(s.raw) }

// Field returns the named field, or nil.
func (s *Standard) Field(name string) *Field {
	for i := range s.Fields {
		if s.Fields[i].Name == name {
			return &s.Fields[i]
		}
	}
	return nil
}

// fieldWithRole returns the index of the field with a role, or -1.
func (s *Standard) fieldWithRole(role string) int {
	for i := range s.Fields {
		if s.Fields[i].Role == role {
			return i
		}
	}
	return -1
}

//go:embed standards/*.json
var sampleFS embed.FS

// Sample standards shipped with nii.
const (
	// LGASpend is the LGA/LGTC 2015 spend-over-£500 standard.
	LGASpend = "lga-spend-over-500"
	// CentralSpend is the central-government spend-over-£25,000 layout.
	CentralSpend = "central-spend-over-25k"
)

// SampleStandard returns the JSON of a shipped standard (LGASpend,
// CentralSpend), ready to publish.
func SampleStandard(name string) ([]byte, error) {
	b, err := sampleFS.ReadFile("standards/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("no sample standard %q: have %s and %s", name, LGASpend, CentralSpend)
	}
	return b, nil
}
