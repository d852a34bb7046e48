package table

import (
	"net/http"
	"path"
	"strings"
)

// The formats nii knows by name. This table is the one place that knows
// them: DetectMediaType reads the extensions and types from it, FormatName
// the short names (a search facet's values, the CLI's format column, CKAN's
// "format", a Data Package resource's "format"), IsTabular which of them
// the profiler reads.
var formats = []format{
	{name: "csv", typ: "text/csv", aliases: []string{"application/csv"}, exts: []string{".csv"}, tabular: true},
	{name: "tsv", typ: "text/tab-separated-values", exts: []string{".tsv", ".tab"}, tabular: true},
	{name: "json", typ: "application/json", aliases: []string{"text/json"}, exts: []string{".json"}},
	{name: "geojson", typ: "application/geo+json", aliases: []string{"application/vnd.geo+json"}, exts: []string{".geojson"}},
	{name: "jsonld", typ: "application/ld+json", exts: []string{".jsonld"}},
	{name: "ndjson", typ: "application/x-ndjson", aliases: []string{"application/ndjson", "application/jsonl"}, exts: []string{".ndjson", ".jsonl"}},
	{name: "xlsx", typ: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", exts: []string{".xlsx"}},
	{name: "xls", typ: "application/vnd.ms-excel", exts: []string{".xls"}},
	{name: "ods", typ: "application/vnd.oasis.opendocument.spreadsheet", exts: []string{".ods"}},
	{name: "pdf", typ: "application/pdf", exts: []string{".pdf"}},
	{name: "xml", typ: "application/xml", aliases: []string{"text/xml"}, exts: []string{".xml"}},
	{name: "zip", typ: "application/zip", aliases: []string{"application/x-zip-compressed"}, exts: []string{".zip"}},
	{name: "parquet", typ: "application/vnd.apache.parquet", aliases: []string{"application/x-parquet"}, exts: []string{".parquet"}},
	{name: "txt", typ: "text/plain", exts: []string{".txt"}},
}

// format is one known format.
type format struct {
	name    string   // short name, lower case
	typ     string   // the media type DetectMediaType gives it
	aliases []string // other media types that mean the same
	exts    []string // file extensions (lower case, with the dot) that decide it
	tabular bool     // delimited text the profiler reads
}

var (
	formatByType = map[string]*format{}
	formatByExt  = map[string]*format{}
)

func init() {
	for i := range formats {
		f := &formats[i]
		for _, t := range append([]string{f.typ}, f.aliases...) {
			formatByType[t] = f
		}
		for _, e := range f.exts {
			formatByExt[e] = f
		}
	}
}

// baseType returns a media type without parameters, lower case.
func baseType(mediaType string) string {
	mt, _, _ := strings.Cut(mediaType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// DetectMediaType returns the IANA media type of a file from its name and
// first bytes. A known extension decides (.csv "text/csv", .xlsx the OOXML
// spreadsheet type, and every other extension of the formats above);
// otherwise the content is sniffed with net/http.DetectContentType
// (parameters such as charset dropped), defaulting to
// "application/octet-stream".
func DetectMediaType(filename string, head []byte) string {
	if f := formatByExt[strings.ToLower(path.Ext(filename))]; f != nil {
		return f.typ
	}
	if len(head) == 0 {
		return "application/octet-stream"
	}
	if mt := baseType(http.DetectContentType(head)); mt != "" {
		return mt
	}
	return "application/octet-stream"
}

// FormatName returns the short name of a media type: "csv" for text/csv,
// "xlsx" for the OOXML spreadsheet type, "xls" for application/vnd.ms-excel
// and so on for the formats above; for any other type, its subtype
// ("png" for image/png), or the input itself if it has no "/".
// Parameters and case are ignored.
func FormatName(mediaType string) string {
	mt := baseType(mediaType)
	if f := formatByType[mt]; f != nil {
		return f.name
	}
	_, sub, ok := strings.Cut(mt, "/")
	if !ok {
		return mt
	}
	return sub
}

// IsTabular reports whether a media type is one the profiler reads as a
// table (CSV and TSV). Parameters and case are ignored.
func IsTabular(mediaType string) bool {
	f := formatByType[baseType(mediaType)]
	return f != nil && f.tabular
}
