package table

import (
	"strconv"
	"strings"
)

// valueKind is a Frictionless type, with its format where it has several.
type valueKind uint8

const (
	kBoolean valueKind = iota
	kYear
	kInteger
	kNumber
	kDatetimeISO    // 2012-06-01T10:30:00Z, 2012-06-01 10:30
	kDatetimeDMYHMS // 01/06/2012 10:30:00
	kDatetimeDMYHM  // 01/06/2012 10:30
	kDateISO        // 2012-06-01
	kDateDMY        // 01/06/2012
	kDateDMYShort   // 01/06/12
	kDateDMonY      // 01-JUN-2012
	kDateDMonYShort // 01-JUN-12
	kDateDashDMY    // 01-06-2012
	nKinds
)

// kindTypes gives each kind's Frictionless type and strptime-style format
// ("" for the default, ISO 8601).
var kindTypes = [nKinds]struct{ typ, format string }{
	kBoolean:        {"boolean", ""},
	kYear:           {"year", ""},
	kInteger:        {"integer", ""},
	kNumber:         {"number", ""},
	kDatetimeISO:    {"datetime", ""},
	kDatetimeDMYHMS: {"datetime", "%d/%m/%Y %H:%M:%S"},
	kDatetimeDMYHM:  {"datetime", "%d/%m/%Y %H:%M"},
	kDateISO:        {"date", ""},
	kDateDMY:        {"date", "%d/%m/%Y"},
	kDateDMYShort:   {"date", "%d/%m/%y"},
	kDateDMonY:      {"date", "%d-%b-%Y"},
	kDateDMonYShort: {"date", "%d-%b-%y"},
	kDateDashDMY:    {"date", "%d-%m-%Y"},
}

// Year values outside this range are not taken for years, so that columns of
// four-digit codes stay integers.
const minYear, maxYear = 1800, 2100

// isText reports whether a non-empty value is none of number, date, datetime
// or boolean: a likely header cell.
func isText(v string) bool {
	var n [nKinds]int64
	classify(v, &n)
	for _, c := range n {
		if c != 0 {
			return false
		}
	}
	return true
}

// classify counts, in n, each kind that v (non-empty and trimmed) parses as.
func classify(v string, n *[nKinds]int64) {
	if num, integer := parseNumber(v); num {
		n[kNumber]++
		if integer {
			n[kInteger]++
			if isYear(v) {
				n[kYear]++
			}
		}
		return
	}
	if isBoolean(v) {
		n[kBoolean]++
		return
	}
	if k, ok := parseDateOrTime(v); ok {
		n[k]++
	}
}

func isASCIIDigit(c byte) bool { return '0' <= c && c <= '9' }

// leadingDigits returns how many ASCII digits s starts with.
func leadingDigits(s string) int {
	i := 0
	for i < len(s) && isASCIIDigit(s[i]) {
		i++
	}
	return i
}

// digitsValue parses a short run of ASCII digits (the caller has checked them).
func digitsValue(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func isBoolean(v string) bool {
	switch len(v) {
	case 2, 3, 4, 5:
		return strings.EqualFold(v, "true") || strings.EqualFold(v, "false") ||
			strings.EqualFold(v, "yes") || strings.EqualFold(v, "no")
	}
	return false
}

func isYear(v string) bool {
	if len(v) != 4 || leadingDigits(v) != 4 {
		return false
	}
	y := digitsValue(v)
	return minYear <= y && y <= maxYear
}

// parseNumber reports whether v is a number, and whether it is an integer.
//
// Numbers may have a sign, a leading "£", thousands separators ("1,100.00"),
// a fraction, an exponent, and may be written as accounting negatives
// ("(28,784,540.00)"). Integers are plain: an optional sign and digits that
// fit in 64 bits. Values with a leading zero ("007", "0123") are codes, not
// numbers.
func parseNumber(v string) (num, integer bool) {
	s := v
	paren := len(s) >= 2 && s[0] == '(' && s[len(s)-1] == ')'
	if paren {
		s = s[1 : len(s)-1]
	}
	signed, currency := false, false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s, signed = s[1:], true
	}
	if strings.HasPrefix(s, "£") {
		s, currency = strings.TrimLeft(s[len("£"):], " "), true
		if !signed && s != "" && (s[0] == '-' || s[0] == '+') {
			s, signed = s[1:], true
		}
	}
	if paren && signed {
		return false, false
	}
	i := leadingDigits(s)
	intDigits := i
	grouped := false
	if 1 <= i && i <= 3 && i < len(s) && s[i] == ',' {
		for i < len(s) && s[i] == ',' {
			if i+4 > len(s) || leadingDigits(s[i+1:i+4]) != 3 {
				return false, false
			}
			i += 4
			grouped = true
		}
		if i < len(s) && isASCIIDigit(s[i]) {
			return false, false // a group of more than three digits
		}
	}
	if s != "" && s[0] == '0' && (intDigits > 1 || grouped) {
		return false, false
	}
	i, frac, exp, ok := fractionAndExponent(s, i)
	if !ok {
		return false, false
	}
	if i != len(s) {
		return false, false
	}
	integer = !paren && !currency && !grouped && !frac && !exp
	if integer && intDigits > 18 {
		_, err := strconv.ParseInt(v, 10, 64)
		integer = err == nil
	}
	return true, integer
}

var monthAbbrevs = [12]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// validDate reports whether y-m-d is a calendar date.
func validDate(y, m, d int) bool {
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [12]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
	if m == 2 && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return d <= days
}

// expandYear expands a two-digit year as strptime's %y does: 69–99 are 19xx,
// 00–68 are 20xx.
func expandYear(y int) int {
	if y < 69 {
		return 2000 + y
	}
	return 1900 + y
}

// parseDMY parses "d/m/Y", "d/m/y", "d-m-Y", "d-b-Y" or "d-b-y" (day and
// numeric month one or two digits, b a three-letter month) at the start of
// s, returning the kind and the rest of s.
func parseDMY(s string) (k valueKind, rest string, ok bool) {
	nd := leadingDigits(s)
	if nd < 1 || nd > 2 || nd == len(s) {
		return 0, "", false
	}
	d := digitsValue(s[:nd])
	sep := s[nd]
	if sep != '/' && sep != '-' {
		return 0, "", false
	}
	s = s[nd+1:]
	var m int
	named := false
	if nm := leadingDigits(s); nm >= 1 && nm <= 2 {
		m = digitsValue(s[:nm])
		s = s[nm:]
	} else if sep == '-' && len(s) >= 3 {
		for i, a := range monthAbbrevs {
			if strings.EqualFold(s[:3], a) {
				m = i + 1
			}
		}
		if m == 0 {
			return 0, "", false
		}
		s = s[3:]
		named = true
	} else {
		return 0, "", false
	}
	if s == "" || s[0] != sep {
		return 0, "", false
	}
	s = s[1:]
	ny := leadingDigits(s)
	var y int
	switch ny {
	case 4:
		y = digitsValue(s[:4])
	case 2:
		if sep == '-' && !named {
			return 0, "", false // %d-%m-%y is not a format we accept
		}
		y = expandYear(digitsValue(s[:2]))
	default:
		return 0, "", false
	}
	if !validDate(y, m, d) {
		return 0, "", false
	}
	switch {
	case named && ny == 4:
		k = kDateDMonY
	case named:
		k = kDateDMonYShort
	case sep == '-':
		k = kDateDashDMY
	case ny == 4:
		k = kDateDMY
	default:
		k = kDateDMYShort
	}
	return k, s[ny:], true
}

// parseISODate parses "YYYY-MM-DD" at the start of s.
func parseISODate(s string) (rest string, ok bool) {
	if len(s) < 10 || leadingDigits(s) != 4 || s[4] != '-' || leadingDigits(s[5:]) != 2 || s[7] != '-' || leadingDigits(s[8:]) != 2 {
		return "", false
	}
	if !validDate(digitsValue(s[:4]), digitsValue(s[5:7]), digitsValue(s[8:10])) {
		return "", false
	}
	return s[10:], true
}

// twoDigits parses exactly two digits at the start of s, at most max.
func twoDigits(s string, max int) (rest string, ok bool) {
	if len(s) < 2 || !isASCIIDigit(s[0]) || !isASCIIDigit(s[1]) || digitsValue(s[:2]) > max {
		return "", false
	}
	return s[2:], true
}

// parseClock parses "HH:MM" or "HH:MM:SS" at the start of s.
func parseClock(s string) (rest string, seconds, ok bool) {
	s, ok = twoDigits(s, 23)
	if !ok || s == "" || s[0] != ':' {
		return "", false, false
	}
	if s, ok = twoDigits(s[1:], 59); !ok {
		return "", false, false
	}
	if s != "" && s[0] == ':' {
		if s, ok = twoDigits(s[1:], 60); !ok {
			return "", false, false
		}
		return s, true, true
	}
	return s, false, true
}

// isISOTimeRest reports whether s is a valid ending for an ISO 8601 time:
// optional fraction of a second, then optional "Z" or a ±hh[:mm] offset.
func isISOTimeRest(s string, seconds bool) bool {
	if seconds && s != "" && (s[0] == '.' || s[0] == ',') {
		f := leadingDigits(s[1:])
		if f == 0 {
			return false
		}
		s = s[1+f:]
	}
	switch {
	case s == "" || s == "Z" || s == "z":
		return true
	case s[0] == '+' || s[0] == '-':
		s, ok := twoDigits(s[1:], 23)
		if !ok {
			return false
		}
		if s != "" && s[0] == ':' {
			s = s[1:]
		}
		if s == "" {
			return true
		}
		s, ok = twoDigits(s, 59)
		return ok && s == ""
	}
	return false
}

// parseDateOrTime returns the date or datetime kind v parses as.
func parseDateOrTime(v string) (valueKind, bool) {
	if len(v) < 6 || !isASCIIDigit(v[0]) {
		return 0, false
	}
	if rest, ok := parseISODate(v); ok {
		if rest == "" {
			return kDateISO, true
		}
		if rest[0] != 'T' && rest[0] != 't' && rest[0] != ' ' {
			return 0, false
		}
		rest, seconds, ok := parseClock(rest[1:])
		if !ok || !isISOTimeRest(rest, seconds) {
			return 0, false
		}
		return kDatetimeISO, true
	}
	k, rest, ok := parseDMY(v)
	if !ok {
		return 0, false
	}
	if rest == "" {
		return k, true
	}
	if k != kDateDMY || rest[0] != ' ' {
		return 0, false
	}
	rest, seconds, ok := parseClock(rest[1:])
	if !ok || rest != "" {
		return 0, false
	}
	if seconds {
		return kDatetimeDMYHMS, true
	}
	return kDatetimeDMYHM, true
}

// fractionAndExponent scans what both number readers accept after the
// integer digits that end at s[i]: an optional ".digits", then an optional
// "e[+-]digits". A lone "." or no digits at all is not a number; end is
// where the scan stopped, for the caller to require the end of s.
func fractionAndExponent(s string, i int) (end int, frac, exp, ok bool) {
	if i < len(s) && s[i] == '.' {
		f := leadingDigits(s[i+1:])
		if i == 0 && f == 0 {
			return i, false, false, false
		}
		i += 1 + f
		frac = true
	}
	if i == 0 {
		return i, false, false, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		e := leadingDigits(s[i:])
		if e == 0 {
			return i, false, false, false
		}
		i += e
		exp = true
	}
	return i, frac, exp, true
}
