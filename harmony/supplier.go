package harmony

import (
	"strings"
	"unicode"
)

// NormaliseSupplier returns a supplier's name in a form that lets the same
// organisation's payments be grouped across publishers: upper case, single
// spaces, punctuation other than "&" dropped, "LIMITED" as "LTD", "PUBLIC
// LIMITED COMPANY" as "PLC", a trading name after "T/A" (trading as)
// dropped, and a leading "THE" dropped. The raw name is kept beside it; this
// is a grouping key, not a correction.
//
//	"Biffa Waste Services Limited"      → "BIFFA WASTE SERVICES LTD"
//	"J Smith T/A Smith's Plumbing"      → "J SMITH"
//	"  the  Wincanton Holdings Ltd. "   → "WINCANTON HOLDINGS LTD"
//	"Exchequer Partnership Plc (100PS)" → "EXCHEQUER PARTNERSHIP PLC 100PS"
func NormaliseSupplier(s string) string {
	up := strings.ToUpper(s)
	for _, ta := range []string{" T/A ", " T/AS ", " TRADING AS "} {
		if i := strings.Index(" "+up+" ", ta); i >= 0 {
			if i == 0 {
				break // nothing before it: keep the trading name
			}
			up = up[:i-1]
			break
		}
	}
	var words []string
	var w strings.Builder
	flush := func() {
		if w.Len() > 0 {
			words = append(words, w.String())
			w.Reset()
		}
	}
	for _, r := range up {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '&':
			w.WriteRune(r)
		case r == '\'' || r == '’' || r == '.':
			// "SMITH'S" → "SMITHS", "LTD." → "LTD", "A.N.D" → "AND"
		default:
			flush()
		}
	}
	flush()
	out := words[:0]
	for i := 0; i < len(words); i++ {
		wd := words[i]
		switch {
		case wd == "LIMITED":
			wd = "LTD"
		case wd == "PUBLIC" && i+2 < len(words) && words[i+1] == "LIMITED" && words[i+2] == "COMPANY":
			wd, i = "PLC", i+2
		case wd == "THE" && len(out) == 0 && i+1 < len(words):
			continue
		}
		out = append(out, wd)
	}
	return strings.Join(out, " ")
}
