package harmony

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// This file holds the typed coercions a mapping names. Each one is explicit:
// the mapping says "dd/mm/yyyy" or "money", and a value that does not fit is
// a reject with a reason, never a guess.

// errMissing is returned by a coercion for a value that is one of the
// recognised "no value" forms (such as "-" for money).
var errMissing = errors.New("missing")

// dateToken is one piece of a compiled date format.
type dateToken struct {
	kind byte   // 'y' yyyy, 'Y' yy, 'm' mm, 'b' Mon, 'B' Month, 'd' dd, 'H' HH, 'M' MI, 'S' SS, 'l' literal
	lit  string // for 'l'
}

// DateFormat is a compiled date format from a mapping: a pattern of tokens
// (yyyy, yy, mm, Mon, Month, dd, HH, MI, SS and literal characters), or one of
// the names "iso" (yyyy-mm-dd) and "excel" (a spreadsheet serial day number,
// 1900 date system).
type DateFormat struct {
	src    string
	excel  bool
	tokens []dateToken
	pivot  int // first year of the century window for yy; 0 if yy is not used
}

// String returns the format as written in the mapping.
func (f *DateFormat) String() string { return f.src }

// ParseDateFormat compiles a date format. pivot is the first year of the
// hundred-year window two-digit years fall in (1950: "49" is 2049, "50" is
// 1950); it must be given when the format uses yy.
func ParseDateFormat(s string, pivot int) (*DateFormat, error) {
	f := &DateFormat{src: s}
	switch strings.ToLower(s) {
	case "excel":
		f.excel = true
		return f, nil
	case "iso":
		s = "yyyy-mm-dd"
	}
	if s == "" {
		return nil, fmt.Errorf("empty date format: write one such as \"dd/mm/yyyy\", \"iso\" or \"excel\"")
	}
	seen := map[byte]bool{}
	for rest := s; rest != ""; {
		var t dateToken
		switch {
		case strings.HasPrefix(rest, "yyyy"):
			t.kind, rest = 'y', rest[4:]
		case strings.HasPrefix(rest, "yy"):
			t.kind, rest = 'Y', rest[2:]
		case strings.HasPrefix(rest, "Month"):
			t.kind, rest = 'B', rest[5:]
		case strings.HasPrefix(strings.ToLower(rest), "mon"):
			t.kind, rest = 'b', rest[3:]
		case strings.HasPrefix(rest, "mm"):
			t.kind, rest = 'm', rest[2:]
		case strings.HasPrefix(rest, "dd"):
			t.kind, rest = 'd', rest[2:]
		case strings.HasPrefix(rest, "HH"):
			t.kind, rest = 'H', rest[2:]
		case strings.HasPrefix(rest, "MI"):
			t.kind, rest = 'M', rest[2:]
		case strings.HasPrefix(rest, "SS"):
			t.kind, rest = 'S', rest[2:]
		default:
			r, n := utf8.DecodeRuneInString(rest)
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				return nil, fmt.Errorf("date format %q: unknown token at %q (use yyyy, yy, mm, Mon, Month, dd, HH, MI, SS)", s, rest)
			}
			t.kind, t.lit, rest = 'l', rest[:n], rest[n:]
		}
		if t.kind != 'l' {
			group := t.kind
			switch group {
			case 'Y':
				group = 'y'
			case 'b', 'B':
				group = 'm'
			}
			if seen[group] {
				return nil, fmt.Errorf("date format %q: the year, month or day is given twice", s)
			}
			seen[group] = true
		}
		if n := len(f.tokens); t.kind == 'l' && n > 0 && f.tokens[n-1].kind == 'l' {
			f.tokens[n-1].lit += t.lit
			continue
		}
		f.tokens = append(f.tokens, t)
	}
	if !seen['y'] || !seen['m'] || !seen['d'] {
		return nil, fmt.Errorf("date format %q: needs a year (yyyy or yy), a month (mm, Mon or Month) and a day (dd)", s)
	}
	for _, t := range f.tokens {
		if t.kind == 'Y' {
			if pivot < 1000 || pivot > 9900 {
				return nil, fmt.Errorf("date format %q uses yy: give pivot_year, the first year two-digit years fall in (e.g. 1950: 49 is 2049, 50 is 1950)", s)
			}
			f.pivot = pivot
		}
	}
	return f, nil
}

var monthNames = [12]string{"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}

// digits reads between min and max ASCII digits from the front of s.
func digits(s string, lo, hi int) (int, string, bool) {
	n, v := 0, 0
	for n < len(s) && n < hi && s[n] >= '0' && s[n] <= '9' {
		v = v*10 + int(s[n]-'0')
		n++
	}
	if n < lo {
		return 0, s, false
	}
	return v, s[n:], true
}

// Parse reads a date (time of day, if the format has one, is checked and
// dropped) and returns days since 1970-01-01.
func (f *DateFormat) Parse(s string) (int64, error) {
	days, _, err := f.parse(s)
	return days, err
}

// parse returns days since 1970-01-01 and seconds into the day.
func (f *DateFormat) parse(s string) (int64, int64, error) {
	if f.excel {
		return parseExcelSerial(s)
	}
	in := s
	y, mo, d, hh, mi, ss := 0, 0, 0, 0, 0, 0
	var ok bool
	for _, t := range f.tokens {
		switch t.kind {
		case 'l':
			if !strings.HasPrefix(s, t.lit) {
				return 0, 0, fmt.Errorf("%q does not fit the date format %q", in, f.src)
			}
			s = s[len(t.lit):]
			continue
		case 'y':
			y, s, ok = digits(s, 4, 4)
		case 'Y':
			var yy int
			yy, s, ok = digits(s, 2, 2)
			y = f.pivot - f.pivot%100 + yy
			if y < f.pivot {
				y += 100
			}
		case 'm':
			mo, s, ok = digits(s, 1, 2)
		case 'd':
			d, s, ok = digits(s, 1, 2)
		case 'H':
			hh, s, ok = digits(s, 1, 2)
		case 'M':
			mi, s, ok = digits(s, 2, 2)
		case 'S':
			ss, s, ok = digits(s, 2, 2)
		case 'b':
			ok = false
			if len(s) >= 3 {
				for i, name := range monthNames {
					if strings.EqualFold(s[:3], name[:3]) {
						mo, s, ok = i+1, s[3:], true
						break
					}
				}
			}
		case 'B':
			ok = false
			for i, name := range monthNames {
				if len(s) >= len(name) && strings.EqualFold(s[:len(name)], name) {
					mo, s, ok = i+1, s[len(name):], true
					break
				}
			}
		}
		if !ok {
			return 0, 0, fmt.Errorf("%q does not fit the date format %q", in, f.src)
		}
	}
	if s != "" {
		return 0, 0, fmt.Errorf("%q does not fit the date format %q (%q left over)", in, f.src, s)
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || y < 1000 {
		return 0, 0, fmt.Errorf("%q is not a real date (read as day %d, month %d, year %d with %q)", in, d, mo, y, f.src)
	}
	if hh > 23 || mi > 59 || ss > 59 {
		return 0, 0, fmt.Errorf("%q has an impossible time of day", in)
	}
	return daysOf(y, mo, d), int64(hh*3600 + mi*60 + ss), nil
}

func daysIn(y, m int) int {
	switch m {
	case 4, 6, 9, 11:
		return 30
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	}
	return 31
}

// Excel's 1900 date system: serial 1 is 1900-01-01, and serial 60 is the
// 29 February 1900 that never was (Lotus's bug, kept by Excel).
const excelUnixEpoch = 25569 // serial of 1970-01-01

func parseExcelSerial(s string) (int64, int64, error) {
	ip, fp, _ := strings.Cut(s, ".")
	n, rest, ok := digits(ip, 1, 6)
	if !ok || rest != "" || strings.Trim(fp, "0123456789") != "" {
		return 0, 0, fmt.Errorf("%q is not a spreadsheet serial date (a whole number of days such as 41085)", s)
	}
	var secs int64
	if fp != "" {
		f, err := strconv.ParseFloat("0."+fp, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%q is not a spreadsheet serial date", s)
		}
		secs = int64(f*86400 + 0.5)
		if secs >= 86400 {
			secs = 86399
		}
	}
	switch {
	case n < 1:
		return 0, 0, fmt.Errorf("%q is not a spreadsheet serial date (serials start at 1, 1900-01-01)", s)
	case n == 60:
		return 0, 0, fmt.Errorf("%q is 29 February 1900, a date that does not exist", s)
	case n < 60:
		return int64(n) - excelUnixEpoch + 1, secs, nil
	}
	return int64(n) - excelUnixEpoch, secs, nil
}

// NumberForm says which written forms a number coercion accepts.
type NumberForm string

const (
	// NumberPlain accepts an optional sign, digits and an optional
	// fraction: "-1234.5". It is Table Schema's default form.
	NumberPlain NumberForm = "plain"
	// NumberMoney also accepts a leading "£" (or "GBP"), thousands
	// separators in groups of three ("1,234.50"), negatives written with a
	// leading or trailing minus ("-12.00", "12.00-") or in parentheses
	// ("(28,784.50)"), and surrounding spaces; a lone "-" means no value.
	NumberMoney NumberForm = "money"
)

// ParseNumber reads a number in the given form and returns it in
// 1/10,000ths. More than four decimal places is an error, not a rounding.
func ParseNumber(s string, form NumberForm) (int64, error) {
	in := s
	s = trimSpace(s)
	neg := false
	if form == NumberMoney {
		if s == "-" || s == "–" || s == "—" {
			return 0, errMissing
		}
		if strings.HasPrefix(s, "(") && strings.HasSuffix(s, ")") {
			neg, s = true, trimSpace(s[1:len(s)-1])
		}
		if strings.HasSuffix(s, "-") {
			if neg {
				return 0, fmt.Errorf("%q has two minus signs", in)
			}
			neg, s = true, trimSpace(s[:len(s)-1])
		}
		if strings.HasPrefix(s, "-") {
			if neg {
				return 0, fmt.Errorf("%q has two minus signs", in)
			}
			neg, s = true, trimSpace(s[1:])
		}
		for _, cur := range []string{"£", "GBP"} {
			if strings.HasPrefix(s, cur) {
				s = trimSpace(s[len(cur):])
				break
			}
		}
		if strings.HasPrefix(s, "-") && !neg {
			neg, s = true, s[1:] // "£-12.00"
		}
	} else if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	ip, fp, hasPoint := strings.Cut(s, ".")
	if form == NumberMoney && strings.Contains(ip, ",") {
		groups := strings.Split(ip, ",")
		if len(groups[0]) < 1 || len(groups[0]) > 3 {
			return 0, fmt.Errorf("%q has misplaced thousands separators", in)
		}
		for _, g := range groups[1:] {
			if len(g) != 3 {
				return 0, fmt.Errorf("%q has misplaced thousands separators (groups of three digits expected)", in)
			}
		}
		ip = strings.Join(groups, "")
	}
	if ip == "" && fp == "" {
		return 0, fmt.Errorf("%q is not a number", in)
	}
	if hasPoint && fp == "" && ip == "" {
		return 0, fmt.Errorf("%q is not a number", in)
	}
	if len(fp) > numberDecimals {
		if strings.TrimRight(fp[numberDecimals:], "0") != "" {
			return 0, fmt.Errorf("%q has more than %d decimal places", in, numberDecimals)
		}
		fp = fp[:numberDecimals]
	}
	var n uint64
	for _, part := range []string{ip, fp + strings.Repeat("0", numberDecimals-len(fp))} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("%q is not a %s number", in, form)
			}
			if n > (1<<63-1)/10-9 {
				return 0, fmt.Errorf("%q is too large", in)
			}
			n = n*10 + uint64(c-'0')
		}
	}
	if neg {
		return -int64(n), nil
	}
	return int64(n), nil
}

// ParseInteger reads an optionally signed whole number.
func ParseInteger(s string) (int64, error) {
	n, err := strconv.ParseInt(trimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	return n, nil
}

// Default boolean forms, as in Table Schema.
var (
	defaultTrue  = []string{"true", "True", "TRUE", "1"}
	defaultFalse = []string{"false", "False", "FALSE", "0"}
)

func parseBoolean(s string, trues, falses []string) (int64, error) {
	for _, t := range trues {
		if s == t {
			return 1, nil
		}
	}
	for _, f := range falses {
		if s == f {
			return 0, nil
		}
	}
	return 0, fmt.Errorf("%q is none of the true values %q or false values %q", s, trues, falses)
}

// trimSpace trims white space, including the no-break and other Unicode
// spaces some exports pad cells with.
func trimSpace(s string) string {
	if len(s) > 0 && s[0] > ' ' && s[0] < utf8.RuneSelf && s[len(s)-1] > ' ' && s[len(s)-1] < utf8.RuneSelf {
		return s
	}
	return strings.TrimFunc(s, unicode.IsSpace)
}

// decodeWindows1252 converts Windows-1252 text to UTF-8 (x/text's decoder,
// which follows WHATWG); pure ASCII is returned as it is.
func decodeWindows1252(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			out, err := charmap.Windows1252.NewDecoder().String(s)
			if err != nil {
				return s
			}
			return out
		}
	}
	return s
}
