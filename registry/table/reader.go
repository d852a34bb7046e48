package table

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nii-uk/nii"
)

// Reader reads the data records of a CSV file as its profile (a nii.Table
// made by Profiler) describes them: the byte-order mark dropped, the
// delimiter, the preamble and header skipped, blank records skipped, each
// field decoded from the profiled encoding to UTF-8.
type Reader struct {
	cr   *csv.Reader
	skip int // records still to skip: the preamble and the header
	win  bool
	line int
}

// NewReader returns a Reader of r's data records under profile t.
func NewReader(r io.Reader, t *nii.Table) *Reader {
	br := bufio.NewReaderSize(r, 256<<10)
	if head, err := br.Peek(3); err == nil && bytes.Equal(head, utf8BOM) {
		br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.LazyQuotes = true
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	if d, _ := utf8.DecodeRuneInString(t.Delimiter); t.Delimiter != "" && d != utf8.RuneError {
		cr.Comma = d
	}
	return &Reader{cr: cr, skip: max(t.HeaderRow, 1), win: t.Encoding == "windows-1252"}
}

// Read returns the next data record, its fields decoded and (for a UTF-8
// table) any invalid byte replaced by U+FFFD; io.EOF after the last. The
// slice is reused by the next call.
func (r *Reader) Read() ([]string, error) {
	for {
		rec, err := r.cr.Read()
		if err != nil {
			return nil, err
		}
		if r.skip > 0 {
			r.skip--
			continue
		}
		if isBlank(rec) {
			continue
		}
		r.line, _ = r.cr.FieldPos(0)
		for i, f := range rec {
			switch {
			case r.win:
				rec[i] = decodeWindows1252(f)
			case !utf8.ValidString(f):
				rec[i] = strings.ToValidUTF8(f, "\uFFFD")
			}
		}
		return rec, nil
	}
}

// Line returns the line the last record read started on (1-based).
func (r *Reader) Line() int { return r.line }

// The parsers below accept exactly what the profiler counts as each type,
// so a column's profiled type can be checked against every cell of a file.
// Each takes a cell with surrounding white space trimmed and not empty.

// ParseNumber reports whether s is a number as the profiler reads them
// ("1,100.00", "£12", "(28,784.50)", "-3.5e2") and returns it as plain
// text: an optional minus, digits, an optional point and digits, or an
// exponent ("-28784.50", "-3.5e2"). scale is the digits after the point;
// exp says whether it has an exponent.
func ParseNumber(s string) (plain string, scale int, exp, ok bool) {
	num, _ := parseNumber(s)
	if !num {
		return "", 0, false, false
	}
	var b strings.Builder
	b.Grow(len(s))
	neg := false
	t := s
	if len(t) >= 2 && t[0] == '(' && t[len(t)-1] == ')' {
		neg, t = true, t[1:len(t)-1]
	}
	frac := -1
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '-':
			if !exp {
				neg = !neg
				continue
			}
			b.WriteByte(c)
		case c == '+', c == ',', c == ' ':
			if exp && c == '+' {
				b.WriteByte(c)
			}
		case c == 'e' || c == 'E':
			exp = true
			b.WriteByte('e')
		case c == '.':
			frac = 0
			b.WriteByte(c)
		case isASCIIDigit(c):
			if frac >= 0 && !exp {
				frac++
			}
			b.WriteByte(c)
		case strings.HasPrefix(t[i:], "£"):
			i += len("£") - 1
		}
	}
	plain = b.String()
	if neg {
		plain = "-" + plain
	}
	return plain, max(frac, 0), exp, true
}

// ParseInteger reports whether s is an integer as the profiler reads them
// (an optional sign and digits, no leading zero, within 64 bits).
func ParseInteger(s string) (int64, bool) {
	num, integer := parseNumber(s)
	if !num || !integer {
		return 0, false
	}
	var n int64
	_, err := fmt.Sscan(s, &n)
	return n, err == nil
}

// ParseBoolean reads true/false/yes/no in any case.
func ParseBoolean(s string) (value, ok bool) {
	if !isBoolean(s) {
		return false, false
	}
	return strings.EqualFold(s, "true") || strings.EqualFold(s, "yes"), true
}

// dateLayouts are Go's layouts for the profiler's date and datetime
// formats (nii.Column.Format, strptime-style; "" is ISO 8601).
var dateLayouts = map[string][]string{
	"":                  {time.DateOnly},
	"%d/%m/%Y":          {"2/1/2006"},
	"%d/%m/%y":          {"2/1/06"},
	"%d-%b-%Y":          {"2-Jan-2006"},
	"%d-%b-%y":          {"2-Jan-06"},
	"%d-%m-%Y":          {"2-1-2006"},
	"%d/%m/%Y %H:%M:%S": {"2/1/2006 15:04:05"},
	"%d/%m/%Y %H:%M":    {"2/1/2006 15:04"},
}

// isoDatetimeLayouts are the ISO 8601 forms the profiler takes for a
// datetime: T or space, minutes or seconds, a fraction, Z or an offset.
var isoDatetimeLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00", "2006-01-02T15:04Z0700", "2006-01-02T15:04Z07", "2006-01-02T15:04",
}

// ParseDate reads a date in a profiled format ("" for ISO, "%d/%m/%Y",
// "%d/%m/%y", "%d-%b-%Y", "%d-%b-%y", "%d-%m-%Y"). Month names are
// matched in any case; two-digit years pivot as strptime's %y (69–99 are
// 19xx).
func ParseDate(s, format string) (time.Time, bool) {
	k, ok := parseDateOrTime(s)
	if !ok || kindTypes[k].typ != "date" || kindTypes[k].format != format {
		return time.Time{}, false
	}
	return parseLayouts(s, dateLayouts[format])
}

// ParseDatetime reads a datetime in a profiled format ("" for ISO 8601,
// "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"). One without an offset is taken
// as UTC.
func ParseDatetime(s, format string) (time.Time, bool) {
	k, ok := parseDateOrTime(s)
	if !ok || kindTypes[k].typ != "datetime" || kindTypes[k].format != format {
		return time.Time{}, false
	}
	if format == "" {
		t := strings.Replace(s, " ", "T", 1)
		t = strings.Replace(t, ",", ".", 1)
		if n := len(t); n > 0 && t[n-1] == 'z' {
			t = t[:n-1] + "Z"
		}
		return parseLayouts(t, isoDatetimeLayouts)
	}
	return parseLayouts(s, dateLayouts[format])
}

func parseLayouts(s string, layouts []string) (time.Time, bool) {
	// Go's Jan wants a capital J: normalise the month name's case.
	if i := strings.IndexByte(s, '-'); i > 0 && i+4 <= len(s) && !isASCIIDigit(s[i+1]) {
		s = s[:i+1] + strings.ToUpper(s[i+1:i+2]) + strings.ToLower(s[i+2:i+4]) + s[i+4:]
	}
	for _, l := range layouts {
		// Go's two-digit years pivot as strptime's %y does (69–99 are 19xx).
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
