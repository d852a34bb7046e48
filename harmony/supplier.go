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
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return normaliseSupplier(s)
		}
	}
	return normaliseASCII(s)
}

// normaliseASCII is NormaliseSupplier for ASCII names, in one pass with
// one allocation: the common case, on the merge's hot path.
func normaliseASCII(s string) string {
	var ubuf [128]byte
	up := ubuf[:0]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = append(up, c)
	}
	for _, ta := range []string{" T/A ", " T/AS ", " TRADING AS "} {
		if i := indexSpaced(up, ta); i >= 0 {
			if i == 0 {
				break
			}
			up = up[:i-1]
			break
		}
	}
	// words, as offsets into one buffer of their letters
	var wbuf [128]byte
	letters := wbuf[:0]
	var wstart, wend [32]int
	words := 0
	start := -1
	for i := 0; i <= len(up); i++ {
		c := byte(' ')
		if i < len(up) {
			c = up[i]
		}
		switch {
		case 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '&':
			if start < 0 {
				start = len(letters)
			}
			letters = append(letters, c)
		case c == '\'' || c == '.':
		default:
			if start >= 0 {
				if words == len(wstart) {
					return normaliseSupplier(s) // a very long name: the general path
				}
				wstart[words], wend[words] = start, len(letters)
				words++
				start = -1
			}
		}
	}
	word := func(i int) []byte { return letters[wstart[i]:wend[i]] }
	out := make([]byte, 0, len(letters)+words)
	n := 0
	for i := 0; i < words; i++ {
		wd := word(i)
		switch {
		case string(wd) == "LIMITED":
			wd = []byte("LTD")
		case string(wd) == "PUBLIC" && i+2 < words && string(word(i+1)) == "LIMITED" && string(word(i+2)) == "COMPANY":
			wd, i = []byte("PLC"), i+2
		case string(wd) == "THE" && n == 0 && i+1 < words:
			continue
		}
		if n > 0 {
			out = append(out, ' ')
		}
		out = append(out, wd...)
		n++
	}
	return string(out)
}

// indexSpaced is strings.Index(" "+up+" ", sub) without building the
// padded string.
func indexSpaced(up []byte, sub string) int {
	n := len(up) + 2
	at := func(i int) byte {
		if i == 0 || i == n-1 {
			return ' '
		}
		return up[i-1]
	}
	for i := 0; i+len(sub) <= n; i++ {
		j := 0
		for j < len(sub) && at(i+j) == sub[j] {
			j++
		}
		if j == len(sub) {
			return i
		}
	}
	return -1
}

// normaliseSupplier is NormaliseSupplier's general path, for any text.
func normaliseSupplier(s string) string {
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
