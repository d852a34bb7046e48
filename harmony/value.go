package harmony

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// kind is the Table Schema type a value holds once coerced.
type kind uint8

const (
	kString kind = iota
	kNumber
	kInteger
	kBoolean
	kDate
	kDatetime
	kYear
)

// kindOf maps a Table Schema field type onto the kind its values are held
// as. Types the engine has no typed form for (time, yearmonth, duration,
// geopoint, geojson, object, array, list, any) are carried as text.
func kindOf(typ string) kind {
	switch typ {
	case "number":
		return kNumber
	case "integer":
		return kInteger
	case "boolean":
		return kBoolean
	case "date":
		return kDate
	case "datetime":
		return kDatetime
	case "year":
		return kYear
	}
	return kString
}

// numberScale is the fixed point of number values: they are held as an
// integer count of 1/10,000ths, so that sums of money are exact.
const (
	numberDecimals = 4
	numberScale    = 10_000
)

// value is one coerced cell. n holds numbers (in 1/10,000ths), integers,
// years, booleans (0/1), dates (days since 1970-01-01) and datetimes
// (Unix seconds, UTC); s holds text.
type value struct {
	null bool
	n    int64
	s    string
}

var nullValue = value{null: true}

// format renders v in the merged table's canonical text form: ISO dates,
// numbers with at least two decimals, "true"/"false".
func (v value) format(k kind) string {
	if v.null {
		return ""
	}
	switch k {
	case kNumber:
		return formatDecimal(v.n)
	case kInteger, kYear:
		return strconv.FormatInt(v.n, 10)
	case kBoolean:
		if v.n != 0 {
			return "true"
		}
		return "false"
	case kDate:
		return dateOfDays(v.n).Format(time.DateOnly)
	case kDatetime:
		return time.Unix(v.n, 0).UTC().Format(time.RFC3339)
	}
	return v.s
}

// compare orders two non-null values of kind k.
func (v value) compare(k kind, w value) int {
	if k == kString {
		return strings.Compare(v.s, w.s)
	}
	switch {
	case v.n < w.n:
		return -1
	case v.n > w.n:
		return 1
	}
	return 0
}

// formatDecimal renders a 1/10,000ths count with at least two decimals:
// 12345000 → "1234.50", 12345670 → "1234.567".
func formatDecimal(n int64) string {
	neg := n < 0
	u := uint64(n)
	if neg {
		u = -u
	}
	ip, fp := u/numberScale, u%numberScale
	frac := fmt.Sprintf("%04d", fp)
	frac = strings.TrimRight(frac, "0")
	for len(frac) < 2 {
		frac += "0"
	}
	s := strconv.FormatUint(ip, 10) + "." + frac
	if neg {
		s = "-" + s
	}
	return s
}

var epoch = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

func daysOf(y, m, d int) int64 {
	return int64(time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Sub(epoch) / (24 * time.Hour))
}

func dateOfDays(n int64) time.Time { return epoch.AddDate(0, 0, int(n)) }

// monthOf returns "yyyy-mm" for a date value held as days.
func monthOf(days int64) string { return dateOfDays(days).Format("2006-01") }
