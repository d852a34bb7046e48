package table

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseNumberPlain(t *testing.T) {
	for _, c := range []struct {
		in, plain string
		scale     int
		exp, ok   bool
	}{
		{"1,100.00", "1100.00", 2, false, true},
		{"£12", "12", 0, false, true},
		{"£ 12.5", "12.5", 1, false, true},
		{"(28,784.50)", "-28784.50", 2, false, true},
		{"-£1,234.50", "-1234.50", 2, false, true},
		{"£-3", "-3", 0, false, true},
		{"-3.5e2", "-3.5e2", 1, true, true},
		{"1E-5", "1e-5", 0, true, true},
		{"+7", "7", 0, false, true},
		{".5", ".5", 1, false, true},
		{"007", "", 0, false, false},
		{"1,23", "", 0, false, false},
		{"n/a", "", 0, false, false},
		{"-(5)", "", 0, false, false},
	} {
		plain, scale, exp, ok := ParseNumber(c.in)
		if plain != c.plain || scale != c.scale || exp != c.exp || ok != c.ok {
			t.Errorf("ParseNumber(%q) = %q, %d, %v, %v; want %q, %d, %v, %v", c.in, plain, scale, exp, ok, c.plain, c.scale, c.exp, c.ok)
		}
	}
}

func TestParseDates(t *testing.T) {
	d := func(y, m, dd int) time.Time { return time.Date(y, time.Month(m), dd, 0, 0, 0, 0, time.UTC) }
	for _, c := range []struct {
		in, format string
		want       time.Time
		ok         bool
	}{
		{"2012-06-25", "", d(2012, 6, 25), true},
		{"25/06/2012", "%d/%m/%Y", d(2012, 6, 25), true},
		{"5/6/12", "%d/%m/%y", d(2012, 6, 5), true},
		{"1/1/70", "%d/%m/%y", d(1970, 1, 1), true},
		{"28-May-2013", "%d-%b-%Y", d(2013, 5, 28), true},
		{"28-MAY-13", "%d-%b-%y", d(2013, 5, 28), true},
		{"01-06-2012", "%d-%m-%Y", d(2012, 6, 1), true},
		{"25/06/2012", "", time.Time{}, false}, // not the column's format
		{"31/02/2012", "%d/%m/%Y", time.Time{}, false},
		{"25/06/2012900", "%d/%m/%Y", time.Time{}, false}, // Lambeth's fused cell
	} {
		got, ok := ParseDate(c.in, c.format)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("ParseDate(%q, %q) = %v, %v; want %v, %v", c.in, c.format, got, ok, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		in, format string
		want       time.Time
	}{
		{"2012-06-01T10:30:00Z", "", time.Date(2012, 6, 1, 10, 30, 0, 0, time.UTC)},
		{"2012-06-01 10:30", "", time.Date(2012, 6, 1, 10, 30, 0, 0, time.UTC)},
		{"2012-06-01T10:30:00.5+01:00", "", time.Date(2012, 6, 1, 9, 30, 0, 5e8, time.UTC)},
		{"01/06/2012 10:30:15", "%d/%m/%Y %H:%M:%S", time.Date(2012, 6, 1, 10, 30, 15, 0, time.UTC)},
		{"01/06/2012 10:30", "%d/%m/%Y %H:%M", time.Date(2012, 6, 1, 10, 30, 0, 0, time.UTC)},
	} {
		got, ok := ParseDatetime(c.in, c.format)
		if !ok || !got.Equal(c.want) {
			t.Errorf("ParseDatetime(%q, %q) = %v, %v; want %v", c.in, c.format, got, ok, c.want)
		}
	}
}

func TestReaderFollowsTheProfile(t *testing.T) {
	const csv = "\xef\xbb\xbfReport of payments\r\n\r\nDate;Supplier;Amount\r\n01/06/2012;Caf\xe9 Ltd;\"1,100.00\"\r\n;;\r\n02/06/2012;B;5\r\n"
	tab, err := Profile(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(strings.NewReader(csv), tab)
	var got [][]string
	var lines []int
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, append([]string(nil), rec...))
		lines = append(lines, r.Line())
	}
	if len(got) != 2 || got[0][1] != "Café Ltd" || got[0][2] != "1,100.00" || got[1][0] != "02/06/2012" || lines[0] != 4 || lines[1] != 6 {
		t.Fatalf("records %q at lines %v (profile %+v)", got, lines, tab)
	}
}
