package nii

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Access says who may pull a dataset's content. Catalog metadata is public
// inside the federation whatever the access; content of a restricted dataset
// needs a grant.
type Access string

const (
	AccessOpen       Access = "open"
	AccessRestricted Access = "restricted"
)

// ParseAccess parses "open" or "restricted"; "" means open.
func ParseAccess(s string) (Access, error) {
	switch Access(s) {
	case "", AccessOpen:
		return AccessOpen, nil
	case AccessRestricted:
		return AccessRestricted, nil
	}
	return "", fmt.Errorf("%w access %q: want open or restricted", ErrInvalid, s)
}

// Metadata describes a dataset version. Field names follow DCAT
// (dct:title, dct:description, dct:publisher, dct:license, dcat:keyword,
// dcat:theme, dct:accessRights, dcat:mediaType, dcat:byteSize, dct:issued,
// dct:modified, dct:conformsTo), so the catalog maps onto DCAT and CKAN
// without guessing.
type Metadata struct {
	Title         string    `json:"title" cbor:"1,keyasint,omitempty"`
	Description   string    `json:"description,omitempty" cbor:"2,keyasint,omitempty"`
	Publisher     string    `json:"publisher" cbor:"3,keyasint,omitempty"` // org slug
	PublisherName string    `json:"publisher_name,omitempty" cbor:"4,keyasint,omitempty"`
	Licence       string    `json:"licence,omitempty" cbor:"5,keyasint,omitempty"` // SPDX-style ID, e.g. OGL-UK-3.0
	Keywords      []string  `json:"keywords,omitempty" cbor:"6,keyasint,omitempty"`
	Themes        []string  `json:"themes,omitempty" cbor:"7,keyasint,omitempty"`
	Access        Access    `json:"access" cbor:"8,keyasint,omitempty"`
	MediaType     string    `json:"media_type" cbor:"9,keyasint,omitempty"`
	ByteSize      int64     `json:"byte_size" cbor:"10,keyasint"`
	Issued        time.Time `json:"issued" cbor:"11,keyasint"`   // first version's publication
	Modified      time.Time `json:"modified" cbor:"12,keyasint"` // this version's publication
	ConformsTo    string    `json:"conforms_to,omitempty" cbor:"13,keyasint,omitempty"`
	Filename      string    `json:"filename,omitempty" cbor:"14,keyasint,omitempty"`
	Table         *Table    `json:"table,omitempty" cbor:"15,keyasint,omitempty"`
	// Kind says what the dataset is (KindData, KindStandard, KindMapping,
	// KindMerged): harmonisation's records are ordinary datasets told apart
	// by it.
	Kind string `json:"kind,omitempty" cbor:"16,keyasint,omitempty"`
	// AppliesTo are, for a mapping, the dataset patterns it maps
	// ("lambeth/spend", "lambeth/spend-*"), so the catalog can answer
	// "which mappings exist for this dataset" without fetching them.
	AppliesTo []string `json:"applies_to,omitempty" cbor:"17,keyasint,omitempty"`
}

// Dataset kinds (Metadata.Kind). docs/harmonisation.md has what each is.
const (
	KindData     = ""         // an ordinary dataset
	KindStandard = "standard" // a Frictionless Table Schema, which other datasets conform to
	KindMapping  = "mapping"  // how one publisher's layout becomes a standard's fields
	KindMerged   = "merged"   // a standard's rows from many sources; its manifest carries the lineage
)

// MaxAppliesTo bounds a mapping's dataset patterns.
const MaxAppliesTo = 32

// Limits on user-supplied metadata, so a record stays small enough to gossip.
const (
	MaxTitleLen       = 300
	MaxDescriptionLen = 8 << 10
	MaxTerms          = 32 // keywords, themes
	MaxTermLen        = 64
	MaxColumns        = 1024
)

// Validate checks user-supplied fields for size and shape.
func (m *Metadata) Validate() error {
	if len(m.Title) > MaxTitleLen {
		return fmt.Errorf("%w title: longer than %d bytes", ErrInvalid, MaxTitleLen)
	}
	if len(m.Description) > MaxDescriptionLen {
		return fmt.Errorf("%w description: longer than %d bytes", ErrInvalid, MaxDescriptionLen)
	}
	for _, terms := range []struct {
		what string
		list []string
	}{{"keyword", m.Keywords}, {"theme", m.Themes}} {
		if len(terms.list) > MaxTerms {
			return fmt.Errorf("%w %ss: more than %d", ErrInvalid, terms.what, MaxTerms)
		}
		for _, t := range terms.list {
			if t == "" || len(t) > MaxTermLen || strings.ContainsAny(t, "\n\r\t") {
				return fmt.Errorf("%w %s %q: want 1 to %d characters on one line", ErrInvalid, terms.what, t, MaxTermLen)
			}
		}
	}
	if _, err := ParseAccess(string(m.Access)); err != nil {
		return err
	}
	maxLicence := MaxTermLen
	if strings.HasPrefix(m.Licence, "other:") {
		maxLicence = 1024 // other:URL, a licence given by its address
	}
	if len(m.Licence) > maxLicence || strings.ContainsAny(m.Licence, " \n\r\t") {
		return fmt.Errorf("%w licence %q: want an identifier such as OGL-UK-3.0", ErrInvalid, m.Licence)
	}
	if len(m.ConformsTo) > 1024 {
		return fmt.Errorf("%w conforms-to: longer than 1024 bytes", ErrInvalid)
	}
	if m.Table != nil && len(m.Table.Columns) > MaxColumns {
		return fmt.Errorf("%w table: more than %d columns", ErrInvalid, MaxColumns)
	}
	return m.validateKind()
}

// validateKind checks Kind and the fields that go with it: a mapping names
// the standard it maps to (conforms_to) and at least one dataset pattern;
// nothing else has patterns; a standard conforms to nothing.
func (m *Metadata) validateKind() error {
	switch m.Kind {
	case KindData, KindMerged:
	case KindStandard:
		if m.ConformsTo != "" {
			return fmt.Errorf("%w metadata: a standard conforms to no other standard (conforms_to %q)", ErrInvalid, m.ConformsTo)
		}
	case KindMapping:
		if m.ConformsTo == "" {
			return fmt.Errorf("%w metadata: a mapping names the standard it maps to in conforms_to", ErrInvalid)
		}
		if len(m.AppliesTo) == 0 {
			return fmt.Errorf("%w metadata: a mapping names the datasets it applies to (applies_to)", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w metadata kind %q: want %q, %q, %q or none", ErrInvalid, m.Kind, KindStandard, KindMapping, KindMerged)
	}
	if len(m.AppliesTo) > 0 && m.Kind != KindMapping {
		return fmt.Errorf("%w metadata: applies_to is for mappings only", ErrInvalid)
	}
	if len(m.AppliesTo) > MaxAppliesTo {
		return fmt.Errorf("%w metadata: more than %d applies_to patterns", ErrInvalid, MaxAppliesTo)
	}
	for _, p := range m.AppliesTo {
		if err := CheckPattern(p); err != nil {
			return err
		}
	}
	return nil
}

// Normalize trims and de-duplicates list fields and fills defaults.
func (m *Metadata) Normalize() {
	m.Title = strings.TrimSpace(m.Title)
	m.Description = strings.TrimSpace(m.Description)
	m.Keywords = normTerms(m.Keywords)
	m.Themes = normTerms(m.Themes)
	if m.Access == "" {
		m.Access = AccessOpen
	}
}

func normTerms(in []string) []string {
	var out []string
	for _, t := range in {
		t = strings.TrimSpace(t)
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Table describes a tabular (CSV) file: its dialect, where its header is, how
// many data rows it has, and its columns with Frictionless Table Schema types.
type Table struct {
	// Encoding is the character encoding detected ("utf-8" or "windows-1252").
	Encoding string `json:"encoding" cbor:"1,keyasint,omitempty"`
	// BOM is true when the file starts with a UTF-8 byte-order mark.
	BOM bool `json:"bom,omitempty" cbor:"2,keyasint,omitempty"`
	// Delimiter is the field separator, usually ",".
	Delimiter string `json:"delimiter" cbor:"3,keyasint,omitempty"`
	// LineTerminator is "\n" or "\r\n".
	LineTerminator string `json:"line_terminator" cbor:"4,keyasint,omitempty"`
	// HeaderRow is the 1-based line (record) number of the header; rows
	// above it are a preamble (report titles, parameters).
	HeaderRow int `json:"header_row" cbor:"5,keyasint,omitempty"`
	// Rows counts data records below the header, blank lines excluded.
	Rows int64 `json:"rows" cbor:"6,keyasint"`
	// Columns are the header's columns in order. Blank trailing header
	// cells with no data under them are dropped.
	Columns []Column `json:"columns" cbor:"7,keyasint,omitempty"`
	// RaggedRows counts data rows whose field count differs from the header's.
	RaggedRows int64 `json:"ragged_rows,omitempty" cbor:"8,keyasint,omitempty"`
	// SampledRows is how many data rows column types and null counts were
	// taken from: every row (it equals Rows) unless typing stopped, which
	// TypesStopped then says why.
	SampledRows int64 `json:"sampled_rows" cbor:"9,keyasint,omitempty"`
	// SkipInitialSpace is set when some cell starts with white space: a
	// reader drops it (as the profiler did), so a whitespace-only cell is
	// empty, a null.
	SkipInitialSpace bool `json:"skip_initial_space,omitempty" cbor:"10,keyasint,omitempty"`
	// TypesStopped says why typing stopped before the last row ("" if it
	// did not): every column is then a string.
	TypesStopped string `json:"types_stopped,omitempty" cbor:"11,keyasint,omitempty"`
}

// Column is one field of a Table, typed as in Frictionless Table Schema:
// string, integer, number, boolean, date, datetime, time, year. Its type
// holds for every value in the file (registry/table).
type Column struct {
	// Name is the header cell trimmed ("column_N" for a blank one).
	Name   string `json:"name" cbor:"1,keyasint"`
	Type   string `json:"type" cbor:"2,keyasint"`
	Format string `json:"format,omitempty" cbor:"3,keyasint,omitempty"` // e.g. "%d/%m/%Y" for dates
	// Nulls counts empty (or white-space) cells, and cells missing from
	// short rows, in every row.
	Nulls int64 `json:"nulls,omitempty" cbor:"4,keyasint,omitempty"`
	// Label is the header cell as a reader sees it (leading white space
	// dropped), when it differs from Name: "Transaction ID " keeps its
	// trailing space, a blank header is "". A schema's field is named
	// with it, so that it matches the file.
	Label *string `json:"label,omitempty" cbor:"5,keyasint,omitempty"`
	// GroupChar is the thousands separator of a number column, if any
	// value uses one.
	GroupChar string `json:"group_char,omitempty" cbor:"6,keyasint,omitempty"`
	// Currency is set on a number column some of whose values carry a
	// leading "£" (none then is negative).
	Currency bool `json:"currency,omitempty" cbor:"7,keyasint,omitempty"`
	// Note says why a column that holds amounts is a string.
	Note string `json:"note,omitempty" cbor:"8,keyasint,omitempty"`
}

// HeaderLabel is the column's header cell as a reader sees it.
func (c Column) HeaderLabel() string {
	if c.Label != nil {
		return *c.Label
	}
	return c.Name
}
