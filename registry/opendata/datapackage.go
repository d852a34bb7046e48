package opendata

import (
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/table"
)

// Frictionless Data Package (v1, with the v2 headerRows where a CSV has a
// preamble). The Table Schema comes from the columns nii inferred at
// publish time (registry/table), which already uses Frictionless types
// and strptime-style date formats.

// DataPackage is a datapackage.json descriptor.
type DataPackage struct {
	Profile      string        `json:"profile"`
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

// Contributor is a Data Package contributor.
type Contributor struct {
	Title string `json:"title"`
	Role  string `json:"role"`
	Path  string `json:"path,omitempty"`
}

// DPResource is a Data Resource.
type DPResource struct {
	Profile   string       `json:"profile"`
	Name      string       `json:"name"`
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
}

// Dialect is a CSV Dialect.
type Dialect struct {
	Delimiter      string `json:"delimiter,omitempty"`
	LineTerminator string `json:"lineTerminator,omitempty"`
	QuoteChar      string `json:"quoteChar"`
	DoubleQuote    bool   `json:"doubleQuote"`
	Header         bool   `json:"header"`
	// HeaderRows (Frictionless v2) gives the header's 1-based row when a
	// preamble sits above it.
	HeaderRows []int `json:"headerRows,omitempty"`
}

// TableSchema is a Frictionless Table Schema.
type TableSchema struct {
	Fields        []Field  `json:"fields"`
	MissingValues []string `json:"missingValues"`
}

// Field is one Table Schema field.
type Field struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Format string `json:"format,omitempty"`
	// GroupChar is set on numbers: nii infers "number" for values with
	// thousands separators ("1,100.00", common in UK spend files), which
	// a Table Schema reader refuses unless told the group character.
	// Plain numbers read the same with it.
	GroupChar string `json:"groupChar,omitempty"`
}

// NewDataPackage describes one version of a dataset. a may be the
// catalog's advert or, for an older version held locally, an advert built
// from the stored record.
func NewDataPackage(site Site, e Entry) DataPackage {
	a := e.Advert
	m := &a.Meta
	d := a.Dataset
	dp := DataPackage{
		Profile:     "data-package",
		Name:        CKANName(d),
		ID:          site.DatasetIRI(d),
		Title:       m.Title,
		Description: m.Description,
		Version:     strconv.FormatUint(a.Version, 10),
		Homepage:    site.Base + "/api/v1/catalog/" + d.Org + "/" + d.Name,
		Keywords:    m.Keywords,
		Contributors: []Contributor{{
			Title: orgTitle(m, d.Org), Role: "publisher", Path: site.OrgIRI(d.Org),
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
		Profile:   "data-resource",
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
		dp.Profile = "tabular-data-package"
		res.Profile = "tabular-data-resource"
		res.Encoding = t.Encoding
		res.Dialect = &Dialect{
			Delimiter: t.Delimiter, LineTerminator: t.LineTerminator,
			QuoteChar: `"`, DoubleQuote: true, Header: true,
		}
		if t.HeaderRow > 1 {
			res.Dialect.HeaderRows = []int{t.HeaderRow}
		}
		res.Schema = &TableSchema{Fields: make([]Field, 0, len(t.Columns)), MissingValues: []string{""}}
		for _, c := range t.Columns {
			f := Field{Name: c.Name, Type: frictionlessType(c.Type), Format: c.Format}
			if f.Type == "number" {
				f.GroupChar = ","
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
