package query_test

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/query"
)

func sample() *query.Result {
	return &query.Result{
		Columns: []query.Column{
			{Name: "_publisher", Type: query.TypeString},
			{Name: "m", Type: query.TypeDate},
			{Name: "sum(amount)", Type: query.TypeDecimal, Scale: 2},
			{Name: "n", Type: query.TypeInteger},
			{Name: "at", Type: query.TypeDatetime},
			{Name: "f", Type: query.TypeNumber},
			{Name: "tags", Type: query.TypeArray},
		},
		Rows: [][]any{
			{"lambeth", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), query.NewDecimal(-2755000, 2), int64(3), time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), 0.5, []any{"a", int64(1)}},
			{"camden \"C\"\n\x1b[31mred", nil, query.NewDecimal(99999, 2), int64(12345), nil, math.NaN(), nil},
		},
		Truncated: true,
		Notice:    "truncated: only the first 2 rows",
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	if err := sample().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := `_publisher                 m           sum(amount)      n  at                     f  tags
-------------------------  ----------  -----------  -----  -------------------  ---  -------
lambeth                    2024-01-01    -27550.00      3  2024-01-02 03:04:05  0.5  ["a",1]
camden "C"\n\u001b[31mred  NULL             999.99  12345  NULL                 NaN  NULL
(2 rows)
(truncated: only the first 2 rows)
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestWriteJSON(t *testing.T) {
	var b strings.Builder
	if err := sample().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	want := `[
{"_publisher":"lambeth","m":"2024-01-01","sum(amount)":-27550.00,"n":3,"at":"2024-01-02T03:04:05Z","f":0.5,"tags":["a",1]},
{"_publisher":"camden \"C\"\n\u001b[31mred","m":null,"sum(amount)":999.99,"n":12345,"at":null,"f":null,"tags":null}
]
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	empty := &query.Result{Columns: []query.Column{{Name: "a", Type: query.TypeString}}}
	if err := empty.WriteJSON(&b); err != nil || b.String() != "[]\n" {
		t.Fatalf("empty: %q %v", b.String(), err)
	}
}

func TestWriteCSV(t *testing.T) {
	var b strings.Builder
	if err := sample().WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	want := "_publisher,m,sum(amount),n,at,f,tags\n" +
		"lambeth,2024-01-01,-27550.00,3,2024-01-02T03:04:05Z,0.5,\"[\"\"a\"\",1]\"\n" +
		"\"camden \"\"C\"\"\n\x1b[31mred\",,999.99,12345,,NaN,\n"
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestDecimal(t *testing.T) {
	cases := []struct{ in, out string }{
		{"0", "0"}, {"-0.50", "-0.50"}, {"1234.5", "1234.5"}, {"+7", "7"}, {".5", "0.5"}, {"5.", "5"},
		{"-28784.50", "-28784.50"}, {"99999999999999999999999999.123456789012", "99999999999999999999999999.123456789012"},
		{"-9223372036854775808", "-9223372036854775808"}, {"0.001", "0.001"},
	}
	for _, c := range cases {
		d, err := query.ParseDecimal(c.in)
		if err != nil || d.String() != c.out {
			t.Errorf("ParseDecimal(%q) = %v, %v; want %s", c.in, d, err, c.out)
		}
	}
	for _, bad := range []string{"", "-", ".", "1e5", "£1", "1,000", "1.2.3", " 1", "0x10", "١٢", strings.Repeat("9", 39)} {
		if _, err := query.ParseDecimal(bad); !errors.Is(err, nii.ErrInvalid) {
			t.Errorf("ParseDecimal(%q): got %v, want ErrInvalid", bad, err)
		}
	}
	if !query.NewDecimal(150, 2).Equal(query.NewDecimal(15, 1)) || query.NewDecimal(150, 2).Equal(query.NewDecimal(15, 2)) {
		t.Error("Equal")
	}
	big1, _ := new(big.Int).SetString("-123456789012345678901234567890", 10)
	if got := query.NewDecimalBig(big1, 5).String(); got != "-1234567890123456789012345.67890" {
		t.Error(got)
	}
	if got := query.NewDecimal(-5, 3).Float64(); got != -0.005 {
		t.Error(got)
	}
	if b, _ := query.NewDecimal(-5, 3).MarshalJSON(); string(b) != "-0.005" {
		t.Error(string(b))
	}
}

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"0", "-1234.50", ".5", "99999999999999999999.9", "-", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := query.ParseDecimal(s)
		if err != nil {
			return
		}
		// Parsing the printed form gives the same number back.
		e, err := query.ParseDecimal(d.String())
		if err != nil || !e.Equal(d) {
			t.Fatalf("%q -> %s -> %v, %v", s, d, e, err)
		}
	})
}
