package opendata

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseFilter(t *testing.T) {
	tru := true
	for _, tc := range []struct {
		in   string
		want Filter
	}{
		{"", Filter{}},
		{"organization:lambeth", Filter{Publisher: []string{"lambeth"}}},
		{"organization:lambeth tags:spend", Filter{Publisher: []string{"lambeth"}, Keyword: []string{"spend"}}},
		{"+organization:lambeth +tags:spend", Filter{Publisher: []string{"lambeth"}, Keyword: []string{"spend"}}},
		{"organization:lambeth AND res_format:CSV", Filter{Publisher: []string{"lambeth"}, Format: []string{"CSV"}}},
		{"organization:(lambeth OR camden)", Filter{Publisher: []string{"lambeth", "camden"}}},
		{"organization:( lambeth || camden )", Filter{Publisher: []string{"lambeth", "camden"}}},
		{`tags:"spend over 500"`, Filter{Keyword: []string{"spend over 500"}}},
		{`tags:("a b" OR c)`, Filter{Keyword: []string{"a b", "c"}}},
		{`tags:a\ b\:c`, Filter{Keyword: []string{"a b:c"}}},
		{"license_id:OGL-UK-3.0 groups:finance", Filter{Licence: []string{"OGL-UK-3.0"}, Theme: []string{"finance"}}},
		{"verified:true access:open conforms_to:x", Filter{Verified: &tru, Access: []string{"open"}, ConformsTo: []string{"x"}}},
		{"*:*", Filter{}},
		{"+dataset_type:dataset", Filter{}},
		{"dataset_type:harvest", Filter{None: true}},
		{"private:true", Filter{Access: []string{"restricted"}}},
		{"capacity:public", Filter{Access: []string{"open"}}},
		{"organization:a OR organization:b", Filter{Publisher: []string{"a", "b"}}},
		{"organization:a OR owner_org:b OR organization:c", Filter{Publisher: []string{"a", "b", "c"}}},
		{"-organization:a -organization:b -groups:g", Filter{NotPublisher: []string{"a", "b"}, NotTheme: []string{"g"}}},
		{"metadata_modified:[2026-01-01T00:00:00Z TO *]", Filter{ModifiedFrom: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"-organization:x metadata_modified:[2026-01-01T00:00:00.123456Z TO 2026-02-01T00:00:00Z]", Filter{NotPublisher: []string{"x"},
			ModifiedFrom: time.Date(2026, 1, 1, 0, 0, 0, 123456000, time.UTC), ModifiedTo: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}},
		{"  \torganization:lambeth\n", Filter{Publisher: []string{"lambeth"}}},
	} {
		got, err := ParseFilter(tc.in)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseFilter(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseFilterRefuses(t *testing.T) {
	for in, wantMsg := range map[string]string{
		"lambeth":                              "want field:value",
		"organization:":                        "want a value",
		"organization: lambeth":                "want a value",
		"-tags:lambeth":                        "negation",
		"NOT organization:lambeth":             "negation",
		"organization:a OR tags:b":             "OR between different fields",
		"OR organization:a":                    "OR between",
		"organization:a OR":                    "OR at the end",
		"metadata_modified:[NOW-1DAY TO NOW]":  "date maths",
		"metadata_modified:2026":               "want a range",
		"tags:a tags:b":                        "given twice",
		"tags:a keyword:b":                     "given twice",
		"organization:(a b)":                   "want OR",
		"organization:(a OR":                   "want a value after OR",
		"organization:(a OR )":                 "want a value after OR",
		"organization:()":                      "empty",
		`tags:"unclosed`:                       "unclosed",
		`tags:""`:                              "empty phrase",
		`tags:"a"b`:                            "space after",
		"tags:sp*":                             "wildcards",
		"metadata_modified:[* TO NOW]":         "date maths",
		"num_resources:[1 TO *]":               "unknown field",
		"tags:[a TO b]":                        "ranges",
		"foo:bar":                              "unknown field",
		"AND tags:x":                           "AND must",
		"tags:x AND":                           "AND at the end",
		"tags:x AND AND tags:y":                "AND must",
		"verified:maybe":                       "true or false",
		"verified:(true OR false)":             "one value",
		"title:*":                              "unknown field",
		`tags:a\`:                              "at the end",
		"organization:" + string([]byte{0xff}): "UTF-8",
		strings.Repeat("tags:x ", 1000):        "longer than",
	} {
		_, err := ParseFilter(in)
		var fe *FilterError
		if !errors.As(err, &fe) {
			t.Errorf("ParseFilter(%q) = %v, want a FilterError", in, err)
			continue
		}
		if !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("ParseFilter(%q) error %q, want it to mention %q", in, err, wantMsg)
		}
	}
}

func TestParseQ(t *testing.T) {
	for _, tc := range []struct {
		in, text string
		want     Filter
	}{
		{"spend", "spend", Filter{}},
		{"*:*", "", Filter{}},
		{"spend organization:lambeth", "spend", Filter{Publisher: []string{"lambeth"}}},
		{"spend AND payments", "spend payments", Filter{}},
		{"name:foo bar", "name:foo bar", Filter{}}, // unknown fields stay text
		{"covid-19 -x", "covid-19 -x", Filter{}},
		{"+spend", "spend", Filter{}},
	} {
		text, f, err := ParseQ(tc.in)
		if err != nil {
			t.Errorf("ParseQ(%q): %v", tc.in, err)
			continue
		}
		if text != tc.text || !reflect.DeepEqual(f, tc.want) {
			t.Errorf("ParseQ(%q) = %q, %+v; want %q, %+v", tc.in, text, f, tc.text, tc.want)
		}
	}
	for _, in := range []string{"spend OR trees", "NOT spend", "-tags:spend"} {
		if _, _, err := ParseQ(in); err == nil {
			t.Errorf("ParseQ(%q) succeeded, want an error", in)
		}
	}
}

func TestFilterMerge(t *testing.T) {
	a, _ := ParseFilter("organization:lambeth")
	b, _ := ParseFilter("tags:spend")
	m, err := a.Merge(b)
	if err != nil || !reflect.DeepEqual(m, Filter{Publisher: []string{"lambeth"}, Keyword: []string{"spend"}}) {
		t.Fatalf("merge = %+v, %v", m, err)
	}
	if _, err := a.Merge(a); err == nil {
		t.Fatal("merging two filters on organization succeeded")
	}
}

// FuzzParseFilter: fq and q come straight from the network. The parser
// must never panic, must only return values it was given (non-empty, valid
// UTF-8, within the limits), and must be deterministic.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "organization:lambeth tags:spend", "+organization:(a OR b) AND tags:\"x y\"",
		`tags:a\ b`, "*:*", "dataset_type:dataset", "verified:true", "tags:(", `tags:"`, "-x:y",
		"organization:(a OR b OR c) groups:finance res_format:CSV license_id:OGL-UK-3.0",
		"organization:a OR organization:b", "-organization:x -groups:y", "metadata_modified:[2026-01-01T00:00:00Z TO *]",
		"private:true capacity:public", "tags:a OR keyword:b OR tags:c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, lenient := range []bool{false, true} {
			var fl Filter
			text, err := parseClauses(s, &fl, lenient)
			var fl2 Filter
			text2, err2 := parseClauses(s, &fl2, lenient)
			if (err == nil) != (err2 == nil) || text != text2 || !reflect.DeepEqual(fl, fl2) {
				t.Fatalf("not deterministic on %q", s)
			}
			if err != nil {
				var fe *FilterError
				if !errors.As(err, &fe) || fe.Pos < 0 || fe.Pos > len(s) {
					t.Fatalf("error %v on %q is not a FilterError with a position inside the input", err, s)
				}
				continue
			}
			if len(text) > len(s) {
				t.Fatalf("text %q longer than the input %q", text, s)
			}
			for _, vals := range [][]string{fl.Publisher, fl.Theme, fl.Keyword, fl.Licence, fl.Format, fl.Access, fl.ConformsTo, fl.NotPublisher, fl.NotTheme} {
				if len(vals) > maxFilterValues {
					t.Fatalf("%d values from %q", len(vals), s)
				}
				for _, v := range vals {
					if v == "" || !utf8.ValidString(v) || len(v) > len(s) {
						t.Fatalf("bad value %q from %q", v, s)
					}
				}
			}
		}
	})
}
