package opendata

import (
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/table"
)

// Frictionless Data Package v2 (https://datapackage.org, 2024): every
// descriptor, resource, dialect and schema names its v2 profile with
// $schema, and nothing of v1 (profile, tabular-data-resource) is mixed in.
// v2 because these files need it: a preamble above the header is
// dialect.headerRows, which v1 cannot say, and v2 readers still read what
// v1 did. The Table Schema comes from the columns nii profiled when the
// file was published (registry/table): every field is named with its
// header cell as a reader sees it, every header cell has a field, and a
// type is declared only where every value of the file reads as it.
// .ci/run validates every shared and demo file against the descriptor a
// node serves for it, with npm's tableschema and datapackage
// (docs/opendata.md).

// Data Package v2 profiles.
const (
	ProfilePackage  = "https://datapackage.org/profiles/2.0/datapackage.json"
	ProfileResource = "https://datapackage.org/profiles/2.0/dataresource.json"
	ProfileDialect  = "https://datapackage.org/profiles/2.0/tabledialect.json"
	ProfileSchema   = "https://datapackage.org/profiles/2.0/tableschema.json"
)

// DataPackage is a datapackage.json descriptor.
type DataPackage struct {
	Profile      string        `json:"$schema"`
	Name         string        `json:"name"`
	ID           string        `json:"id"`
	Title        string        `json:"title,omitempty"`
	Description  string        `json:"description,omitempty"`
	Version      string        `json:"version"`
	Created      string        `json:"created,omitempty"`
	Homepage     string        `json:"homepage,omitempty"`
	Keywords     []string      `json:"keywords,omitempty"`
	Licenses     []License     `json:"licenses,omitempty"`
	Contributors []Contributor `json:"contributors,omitempty"`
	Resources    []DPResource  `json:"resources"`
	// nii's own properties (Frictionless allows extra ones).
	Dataset   string     `json:"nii:dataset"`
	Publisher nii.NodeID `json:"nii:publisher_node,omitempty"`
	Verified  bool       `json:"nii:verified"`
}

// License is a Data Package licence.
type License struct {
	Name  string `json:"name,omitempty"`
	Path  string `json:"path,omitempty"`
	Title string `json:"title,omitempty"`
}

// Contributor is a Data Package contributor (v2: roles, a list).
type Contributor struct {
	Title string   `json:"title"`
	Roles []string `json:"roles"`
	Path  string   `json:"path,omitempty"`
}

// DPResource is a Data Resource.
type DPResource struct {
	Profile   string       `json:"$schema"`
	Name      string       `json:"name"`
	Type      string       `json:"type,omitempty"` // "table" for tabular data
	Path      string       `json:"path"`
	Title     string       `json:"title,omitempty"`
	Format    string       `json:"format,omitempty"`
	Mediatype string       `json:"mediatype,omitempty"`
	Bytes     int64        `json:"bytes"`
	Encoding  string       `json:"encoding,omitempty"`
	Dialect   *Dialect     `json:"dialect,omitempty"`
	Schema    *TableSchema `json:"schema,omitempty"`
	// The manifest hash names the version's content in nii (BLAKE3 of the
	// signed manifest, not of the file's bytes), so it is not given as
	// Frictionless's "hash", which tools check against the file.
	Manifest string `json:"nii:manifest"`
	Version  uint64 `json:"nii:version"`
	// RaggedRows is how many rows have more or fewer cells than the
	// header: each is a row error to any validator, and no descriptor can
	// say otherwise (Lambeth's 358 rows with the date and amount fused).
	RaggedRows int64 `json:"nii:raggedRows,omitempty"`
}

// Dialect is a v2 Table Dialect.
type Dialect struct {
	Profile        string `json:"$schema"`
	Header         bool   `json:"header"`
	HeaderRows     []int  `json:"headerRows,omitempty"` // the header's row when a preamble sits above it
	Delimiter      string `json:"delimiter,omitempty"`
	LineTerminator string `json:"lineTerminator,omitempty"`
	QuoteChar      string `json:"quoteChar"`
	DoubleQuote    bool   `json:"doubleQuote"`
	// SkipInitialSpace: white space after a delimiter is not part of the
	// value (so a white-space cell is empty, a missing value).
	SkipInitialSpace bool `json:"skipInitialSpace,omitempty"`
}

// TableSchema is a v2 Table Schema.
type TableSchema struct {
	Profile       string   `json:"$schema"`
	Fields        []Field  `json:"fields"`
	MissingValues []string `json:"missingValues"`
}

// Field is one Table Schema field.
type Field struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Format      string   `json:"format,omitempty"`
	Title       string   `json:"title,omitempty"`
	Description string   `json:"description,omitempty"`
	GroupChar   string   `json:"groupChar,omitempty"`
	BareNumber  *bool    `json:"bareNumber,omitempty"`
	TrueValues  []string `json:"trueValues,omitempty"`
	FalseValues []string `json:"falseValues,omitempty"`
}

// descriptorEncoding is how a Data Resource names a table's encoding. A
// UTF-8 file that starts with a byte-order mark is "utf-8-sig", as
// Frictionless's reference implementation declares it: a reader must drop
// the mark, or the first header cell is not the first field's name.
func descriptorEncoding(t *nii.Table) string {
	if t.BOM && t.Encoding == "utf-8" {
		return "utf-8-sig"
	}
	return t.Encoding
}

// NewDataPackage describes one version of a dataset. a may be the
// catalog's advert or, for an older version held locally, an advert built
// from the stored record.
func NewDataPackage(site Site, e Entry) DataPackage {
	a := e.Advert
	m := &a.Meta
	d := a.Dataset
	dp := DataPackage{
		Profile:     ProfilePackage,
		Name:        e.PackageName(),
		ID:          site.EntryIRI(e),
		Title:       m.Title,
		Description: m.Description,
		Version:     strconv.FormatUint(a.Version, 10),
		Homepage:    site.Base + "/api/v1/catalog/" + d.Org + "/" + d.Name,
		Keywords:    m.Keywords,
		Contributors: []Contributor{{
			Title: orgTitle(m, d.Org), Roles: []string{"publisher"}, Path: site.PublisherIRI(e),
		}},
		Dataset: d.String(), Publisher: a.Origin, Verified: e.Verified,
	}
	if !m.Issued.IsZero() {
		dp.Created = m.Issued.UTC().Format(time.RFC3339)
	}
	if m.Licence != "" {
		l := lookupLicence(m.Licence)
		dp.Licenses = []License{{Name: m.Licence, Path: l.url, Title: l.title}}
	}
	mt := mediaType(m.MediaType)
	res := DPResource{
		Profile:   ProfileResource,
		Name:      resourceName(d, m),
		Path:      e.Download,
		Title:     m.Title,
		Format:    table.FormatName(mt),
		Mediatype: mt,
		Bytes:     m.ByteSize,
		Manifest:  a.Manifest.String(),
		Version:   a.Version,
	}
	if mt == "" {
		res.Format = ""
	}
	if t := m.Table; t != nil && len(t.Columns) > 0 {
		res.Type = "table"
		res.Encoding = descriptorEncoding(t)
		res.RaggedRows = t.RaggedRows
		res.Dialect = &Dialect{
			Profile: ProfileDialect, Header: true,
			Delimiter: t.Delimiter, LineTerminator: t.LineTerminator,
			QuoteChar: `"`, DoubleQuote: true, SkipInitialSpace: t.SkipInitialSpace,
		}
		if t.HeaderRow > 1 {
			res.Dialect.HeaderRows = []int{t.HeaderRow}
		}
		res.Schema = &TableSchema{Profile: ProfileSchema, Fields: make([]Field, 0, len(t.Columns)), MissingValues: []string{""}}
		for _, c := range t.Columns {
			f := Field{Name: c.HeaderLabel(), Type: frictionlessType(c.Type), Format: c.Format, Description: c.Note}
			if f.Name != c.Name {
				f.Title = c.Name
			}
			switch f.Type {
			case "number":
				f.GroupChar = c.GroupChar
				if c.Currency {
					no := false
					f.BareNumber = &no // "£1,234.50": read without the "£"
				}
			case "boolean":
				f.TrueValues, f.FalseValues = table.TrueValues, table.FalseValues
			}
			res.Schema.Fields = append(res.Schema.Fields, f)
		}
	}
	dp.Resources = []DPResource{res}
	return dp
}

// frictionlessType returns t if it is a Table Schema type, else "any".
func frictionlessType(t string) string {
	switch t {
	case "string", "number", "integer", "boolean", "object", "array", "date", "time",
		"datetime", "year", "yearmonth", "duration", "geopoint", "geojson", "any":
		return t
	}
	return "any"
}

// resourceName is a Data Resource name: lowercase [a-z0-9._-], from the
// file's name without its extension, else the dataset's name.
func resourceName(d nii.DatasetID, m *nii.Metadata) string {
	base := m.Filename
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return d.Name
	}
	return b.String()
}
