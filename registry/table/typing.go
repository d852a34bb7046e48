package table

import (
	"strings"
)

// Whole-file column typing. A column's type is a fact about every value
// in the file, never a sample: each non-null value narrows the set of
// types all values so far can be read as, and a later value that
// contradicts a type (the GLA's "Corp Card" among numeric vendor IDs,
// 12,000 rows in) widens the column, to string at the end of the line.
//
// A type is given only where a Table Schema reader reads every value as
// that type: the rules are those of Frictionless's implementations
// (checked against npm's tableschema in .ci/run). A value is the cell as a
// reader with skipInitialSpace sees it: leading white space dropped,
// trailing white space kept.
//
//   - integer: -?digits, no "+", no leading zero, no trailing space, at
//     most 15 digits (JavaScript's integers are exact to 2^53);
//   - year: an integer of four digits from 1800 to 2100;
//   - number: a sign, digits with "," between thousands (groupChar ","),
//     a fraction, an exponent; trailing white space is fine (readers drop
//     white space). No leading zero: "007" is a code;
//   - number with a "£" on some values (bareNumber false, which strips
//     every character around the digits, the sign too): only when no
//     value has a sign or starts with "."; otherwise, like accounting
//     negatives "(1,234.50)", which no Table Schema property reads, the
//     column is a string and the field's description says why;
//   - boolean: true/false/yes/no in lower, Title or UPPER case, declared
//     as trueValues and falseValues;
//   - dates and times in one exact format each (two-digit day and month,
//     as a strict reader wants: "8/6/2012" is not %d/%m/%Y), no trailing
//     space.

// tkind is a type a value can be read as, with its format.
type tkind uint8

const (
	tYear tkind = iota
	tInteger
	tNumber // plain: signed, grouped, fraction, exponent
	tMoney  // unsigned, with or without a leading "£": bareNumber false
	tAmount // an amount nii reads but Table Schema cannot (parens, signed £)
	tBoolean
	tDatetimeZ      // 2012-06-01T10:30:00Z (the default format)
	tDatetimeT      // 2012-06-01T10:30:00
	tDatetimeSpaceS // 2012-06-01 10:30:00
	tDatetimeSpaceM // 2012-06-01 10:30
	tDatetimeDMYS   // 01/06/2012 10:30:00
	tDatetimeDMYM   // 01/06/2012 10:30
	tDateISO        // 2012-06-01
	tDateDMY        // 01/06/2012
	tDateDMYShort   // 01/06/12
	tDateDMonY      // 01-JUN-2012
	tDateDMonYShort // 01-JUN-12
	tDateDashDMY    // 01-06-2012
	nTKinds
)

var tkindTypes = [nTKinds]struct{ typ, format string }{
	tYear: {"year", ""}, tInteger: {"integer", ""}, tNumber: {"number", ""}, tMoney: {"number", ""},
	tAmount: {"string", ""}, tBoolean: {"boolean", ""},
	tDatetimeZ: {"datetime", ""}, tDatetimeT: {"datetime", "%Y-%m-%dT%H:%M:%S"},
	tDatetimeSpaceS: {"datetime", "%Y-%m-%d %H:%M:%S"}, tDatetimeSpaceM: {"datetime", "%Y-%m-%d %H:%M"},
	tDatetimeDMYS: {"datetime", "%d/%m/%Y %H:%M:%S"}, tDatetimeDMYM: {"datetime", "%d/%m/%Y %H:%M"},
	tDateISO: {"date", ""}, tDateDMY: {"date", "%d/%m/%Y"}, tDateDMYShort: {"date", "%d/%m/%y"},
	tDateDMonY: {"date", "%d-%b-%Y"}, tDateDMonYShort: {"date", "%d-%b-%y"}, tDateDashDMY: {"date", "%d-%m-%Y"},
}

// inferOrder is the order types are preferred in, most specific first.
var inferOrder = []tkind{tYear, tInteger, tNumber, tMoney, tBoolean,
	tDatetimeZ, tDatetimeT, tDatetimeSpaceS, tDatetimeSpaceM, tDatetimeDMYS, tDatetimeDMYM,
	tDateISO, tDateDMY, tDateDMYShort, tDateDMonY, tDateDMonYShort, tDateDashDMY}

type kindSet uint32

const allKindSet = kindSet(1)<<nTKinds - 1

func (s kindSet) has(k tkind) bool { return s&(1<<k) != 0 }

// TrueValues and FalseValues are the boolean spellings nii types a column
// boolean for, and declares in its Table Schema.
var (
	TrueValues  = []string{"true", "True", "TRUE", "yes", "Yes", "YES"}
	FalseValues = []string{"false", "False", "FALSE", "no", "No", "NO"}
)

// AmountNote is the description of a column of amounts typed string.
const AmountNote = "Amounts written as accounting negatives such as (1,234.50), or with both a sign and a £, which no Table Schema property reads as numbers (bareNumber false would drop the sign): declared string so that a validator reads every value; nii's standards and mappings read them as numbers (docs/harmonisation.md)."

// colTyper follows one column through every row.
type colTyper struct {
	nonNull, nulls int64
	ok             kindSet // the kinds every non-null value so far is
	grouped        bool    // some number has "," between thousands
	currency       bool    // some number has a leading "£"
}

func newColTyper() colTyper { return colTyper{ok: allKindSet} }

const spaceChars = " \t\r\n\f"

func isSpaceChar(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' }

// trimLeftSpace drops the white space a reader with skipInitialSpace
// drops (csv-parse's ltrim: space, tab, CR, LF, form feed).
func trimLeftSpace(s string) string {
	i := 0
	for i < len(s) && isSpaceChar(s[i]) {
		i++
	}
	return s[i:]
}

func trimRightSpace(s string) string {
	i := len(s)
	for i > 0 && isSpaceChar(s[i-1]) {
		i--
	}
	return s[:i]
}

// add takes a cell as a reader with skipInitialSpace sees it (leading
// white space dropped). An empty one is a null.
func (c *colTyper) add(v string) {
	if v == "" {
		c.nulls++
		return
	}
	c.nonNull++
	if c.ok == 0 {
		return // a string whatever comes
	}
	c.ok &= c.kindsOf(v)
}

// kindsOf returns the kinds v is, among those still possible, and notes
// the number facts of the values read as numbers.
func (c *colTyper) kindsOf(v string) kindSet {
	var s kindSet
	t := trimRightSpace(v)
	trailing := len(t) != len(v)
	const numeric = 1<<tYear | 1<<tInteger | 1<<tNumber | 1<<tMoney | 1<<tAmount
	if c.ok&numeric != 0 {
		if sh, ok := numberShape(t); ok {
			s |= 1 << tAmount
			plain := !sh.currency && !sh.paren
			if plain {
				s |= 1 << tNumber
			}
			if !sh.paren && sh.sign == 0 && !sh.leadingDot {
				s |= 1 << tMoney
			}
			if plain && !trailing && sh.sign != '+' && sh.integer && sh.digits <= 15 && t != "-0" {
				s |= 1 << tInteger
				if len(t) == 4 && sh.sign == 0 {
					if y := digitsValue(t); minYear <= y && y <= maxYear {
						s |= 1 << tYear
					}
				}
			}
			if s&(1<<tNumber|1<<tMoney) != 0 {
				c.grouped = c.grouped || sh.grouped
				c.currency = c.currency || sh.currency
			}
			return s
		}
	}
	if c.ok.has(tBoolean) && len(t) <= 5 {
		for _, b := range TrueValues {
			if t == b {
				return 1 << tBoolean
			}
		}
		for _, b := range FalseValues {
			if t == b {
				return 1 << tBoolean
			}
		}
	}
	if !trailing && len(t) >= 8 && isASCIIDigit(t[0]) {
		if k, ok := exactDateKind(t); ok {
			s |= 1 << k
		}
	}
	return s
}

// infer returns the column's Table Schema type, format, group character,
// whether numbers carry a currency sign (bareNumber false) and, for a
// string that holds amounts, why it is one.
func (c *colTyper) infer() (typ, format, groupChar string, currency bool, note string) {
	if c.nonNull == 0 {
		return "string", "", "", false, ""
	}
	for _, k := range inferOrder {
		if !c.ok.has(k) {
			continue
		}
		typ, format = tkindTypes[k].typ, tkindTypes[k].format
		if k == tNumber || k == tMoney {
			if c.grouped {
				groupChar = ","
			}
			currency = k == tMoney && c.currency
		}
		return typ, format, groupChar, currency, ""
	}
	if c.ok.has(tAmount) {
		return "string", "", "", false, AmountNote
	}
	return "string", "", "", false, ""
}

// shape is what numberShape finds in a number.
type shape struct {
	sign       byte // 0, '-' or '+'
	currency   bool // a leading "£"
	paren      bool // (1,234.50)
	grouped    bool // "," between thousands
	leadingDot bool // ".5"
	integer    bool // digits only
	digits     int  // digits before any fraction
}

// numberShape parses an amount as UK spend files write them: a sign, a
// leading "£" (before or after the sign), thousands separators, a
// fraction, an exponent, or accounting parentheses. A leading zero ("007",
// "0,123") makes it a code, not a number.
func numberShape(v string) (shape, bool) {
	var sh shape
	s := v
	if len(s) >= 2 && s[0] == '(' && s[len(s)-1] == ')' {
		s, sh.paren = s[1:len(s)-1], true
	}
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s, sh.sign = s[1:], s[0]
	}
	if strings.HasPrefix(s, "£") {
		s, sh.currency = s[len("£"):], true
		if sh.sign == 0 && s != "" && (s[0] == '-' || s[0] == '+') {
			s, sh.sign = s[1:], s[0]
		}
	}
	if sh.paren && sh.sign != 0 {
		return sh, false
	}
	i := leadingDigits(s)
	sh.digits = i
	if 1 <= i && i <= 3 && i < len(s) && s[i] == ',' {
		for i < len(s) && s[i] == ',' {
			if i+4 > len(s) || leadingDigits(s[i+1:i+4]) != 3 {
				return sh, false
			}
			i += 4
			sh.grouped = true
		}
		if i < len(s) && isASCIIDigit(s[i]) {
			return sh, false
		}
	}
	if s != "" && s[0] == '0' && (sh.digits > 1 || sh.grouped) {
		return sh, false
	}
	intPart := i
	i, frac, exp, ok := fractionAndExponent(s, i)
	if !ok {
		return sh, false
	}
	sh.leadingDot = intPart == 0 && frac
	if i != len(s) {
		return sh, false
	}
	sh.integer = !sh.grouped && !frac && !exp && intPart > 0
	return sh, true
}

// exactDateKind returns the one exact date or datetime format v is in.
func exactDateKind(v string) (tkind, bool) {
	if rest, ok := parseISODate(v); ok {
		if rest == "" {
			return tDateISO, true
		}
		sep := rest[0]
		if sep != 'T' && sep != ' ' {
			return 0, false
		}
		rest, seconds, ok := parseClock(rest[1:])
		switch {
		case !ok:
		case sep == 'T' && seconds && rest == "Z":
			return tDatetimeZ, true
		case sep == 'T' && seconds && rest == "":
			return tDatetimeT, true
		case sep == ' ' && seconds && rest == "":
			return tDatetimeSpaceS, true
		case sep == ' ' && !seconds && rest == "":
			return tDatetimeSpaceM, true
		}
		return 0, false
	}
	// Two-digit day and month: a strict reader of %d and %m wants them.
	if len(v) < 8 || !isASCIIDigit(v[1]) || !(v[2] == '/' || v[2] == '-') {
		return 0, false
	}
	if isASCIIDigit(v[3]) && (len(v) < 5 || !isASCIIDigit(v[4])) {
		return 0, false
	}
	k, rest, ok := parseDMY(v)
	if !ok {
		return 0, false
	}
	var tk tkind
	switch k {
	case kDateDMY:
		tk = tDateDMY
	case kDateDMYShort:
		tk = tDateDMYShort
	case kDateDMonY:
		tk = tDateDMonY
	case kDateDMonYShort:
		tk = tDateDMonYShort
	case kDateDashDMY:
		tk = tDateDashDMY
	default:
		return 0, false
	}
	if rest == "" {
		return tk, true
	}
	if tk != tDateDMY || rest[0] != ' ' {
		return 0, false
	}
	rest, seconds, ok := parseClock(rest[1:])
	if !ok || rest != "" {
		return 0, false
	}
	if seconds {
		return tDatetimeDMYS, true
	}
	return tDatetimeDMYM, true
}
