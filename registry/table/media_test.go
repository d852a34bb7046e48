package table

import (
	"strings"
	"testing"
)

// TestFormatNames pins every known format: the media type DetectMediaType
// gives for each of its extensions, and the short name FormatName gives for
// that type and each alias, the one name the search facets, the CLI and
// the open-data views all show.
func TestFormatNames(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		aliases []string
		exts    []string
		tabular bool
	}{
		{"csv", "text/csv", []string{"application/csv"}, []string{".csv"}, true},
		{"tsv", "text/tab-separated-values", nil, []string{".tsv", ".tab"}, true},
		{"json", "application/json", []string{"text/json"}, []string{".json"}, false},
		{"geojson", "application/geo+json", []string{"application/vnd.geo+json"}, []string{".geojson"}, false},
		{"jsonld", "application/ld+json", nil, []string{".jsonld"}, false},
		{"ndjson", "application/x-ndjson", []string{"application/ndjson", "application/jsonl"}, []string{".ndjson", ".jsonl"}, false},
		{"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", nil, []string{".xlsx"}, false},
		{"xls", "application/vnd.ms-excel", nil, []string{".xls"}, false},
		{"ods", "application/vnd.oasis.opendocument.spreadsheet", nil, []string{".ods"}, false},
		{"pdf", "application/pdf", nil, []string{".pdf"}, false},
		{"xml", "application/xml", []string{"text/xml"}, []string{".xml"}, false},
		{"zip", "application/zip", []string{"application/x-zip-compressed"}, []string{".zip"}, false},
		{"parquet", "application/vnd.apache.parquet", []string{"application/x-parquet"}, []string{".parquet"}, false},
		{"txt", "text/plain", nil, []string{".txt"}, false},
	}
	if len(tests) != len(formats) {
		t.Errorf("the test pins %d formats, the table has %d: pin the new ones", len(tests), len(formats))
	}
	for _, tt := range tests {
		for _, ext := range tt.exts {
			for _, file := range []string{"f" + ext, "dir/F" + strings.ToUpper(ext)} {
				if got := DetectMediaType(file, nil); got != tt.typ {
					t.Errorf("DetectMediaType(%q) = %q, want %q", file, got, tt.typ)
				}
			}
		}
		for _, mt := range append([]string{tt.typ}, tt.aliases...) {
			for _, in := range []string{mt, strings.ToUpper(mt), mt + "; charset=utf-8"} {
				if got := FormatName(in); got != tt.name {
					t.Errorf("FormatName(%q) = %q, want %q", in, got, tt.name)
				}
				if got := IsTabular(in); got != tt.tabular {
					t.Errorf("IsTabular(%q) = %v, want %v", in, got, tt.tabular)
				}
			}
		}
	}
}

func TestFormatName(t *testing.T) {
	for in, want := range map[string]string{
		"text/csv":                  "csv",
		"text/csv; charset=utf-8":   "csv",
		"TEXT/CSV":                  "csv",
		"application/json":          "json",
		"application/geo+json":      "geojson",
		"text/tab-separated-values": "tsv",
		"application/pdf":           "pdf",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
		"application/vnd.ms-excel": "xls",
		"application/x-shapefile":  "x-shapefile",
		"image/png":                "png",
		"":                         "",
	} {
		if got := FormatName(in); got != want {
			t.Errorf("FormatName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsTabular(t *testing.T) {
	for in, want := range map[string]bool{
		"text/csv": true, " text/csv ; header=present": true, "text/tab-separated-values": true,
		"application/json": false, "text/plain": false, "": false, "text/csvx": false,
	} {
		if got := IsTabular(in); got != want {
			t.Errorf("IsTabular(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestDetectMediaType(t *testing.T) {
	tests := []struct {
		filename string
		head     string
		want     string
	}{
		{"spend.csv", "a,b\n", "text/csv"},
		{"SPEND.CSV", "", "text/csv"},
		{"dir/spend.tsv", "a\tb\n", "text/tab-separated-values"},
		{"data.json", "{}", "application/json"},
		{"wards.geojson", `{"type":"FeatureCollection"}`, "application/geo+json"},
		{"budget.xlsx", "PK\x03\x04", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
		{"report.pdf", "%PDF-1.7", "application/pdf"},
		{"bundle.zip", "PK\x03\x04", "application/zip"},
		{"readme.txt", "hello", "text/plain"},
		{"C:\\Users\\x\\spend.csv", "", "text/csv"},
		// Sniffed.
		{"report", "%PDF-1.7\n", "application/pdf"},
		{"archive", "PK\x03\x04\x14\x00\x00\x00", "application/zip"},
		{"notes", "hello, world\n", "text/plain"},
		{"page.html", "<!DOCTYPE html><html></html>", "text/html"},
		{"image.dat", "\x89PNG\r\n\x1a\n", "image/png"},
		{"blob", "\x00\x01\x02\x03", "application/octet-stream"},
		{"empty", "", "application/octet-stream"},
		{"", "", "application/octet-stream"},
	}
	for _, tt := range tests {
		if got := DetectMediaType(tt.filename, []byte(tt.head)); got != tt.want {
			t.Errorf("DetectMediaType(%q, %q) = %q, want %q", tt.filename, tt.head, got, tt.want)
		}
	}
}
