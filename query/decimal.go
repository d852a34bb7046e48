package query

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/nii-uk/nii"
)

// Decimal is an exact decimal number, unscaled × 10^-scale: money loaded
// into and read back from decimal columns, without binary rounding.
// The zero value is 0.
type Decimal struct {
	small int64    // the unscaled value, when big is nil
	big   *big.Int // the unscaled value, when it does not fit in an int64
	scale int
}

// NewDecimal returns unscaled × 10^-scale: NewDecimal(-123450, 2) is -1234.50.
func NewDecimal(unscaled int64, scale int) Decimal {
	return Decimal{small: unscaled, scale: scale}
}

// NewDecimalBig is NewDecimal for an unscaled value of any size.
func NewDecimalBig(unscaled *big.Int, scale int) Decimal {
	if unscaled.IsInt64() {
		return Decimal{small: unscaled.Int64(), scale: scale}
	}
	return Decimal{big: new(big.Int).Set(unscaled), scale: scale}
}

// maxDecimalDigits bounds ParseDecimal's input (DuckDB's widest DECIMAL).
const maxDecimalDigits = 38

// ParseDecimal parses a plain decimal: an optional sign, digits, and an
// optional point with more digits ("1234.50", "-0.5", "7"). It takes no
// currency signs, thousands separators or exponents: turning "£1,234.50"
// into a number is a mapping's coercion, not the engine's.
func ParseDecimal(s string) (Decimal, error) {
	t := s
	neg := false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	intPart, frac, hasPoint := strings.Cut(t, ".")
	digits := intPart + frac
	if digits == "" || (hasPoint && frac == "" && intPart == "") {
		return Decimal{}, fmt.Errorf("%w decimal %q: want digits with an optional point, e.g. -1234.50", nii.ErrInvalid, s)
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return Decimal{}, fmt.Errorf("%w decimal %q: want digits with an optional point, e.g. -1234.50", nii.ErrInvalid, s)
		}
	}
	if len(strings.TrimLeft(digits, "0")) > maxDecimalDigits {
		return Decimal{}, fmt.Errorf("%w decimal %q: more than %d significant digits", nii.ErrInvalid, s, maxDecimalDigits)
	}
	if len(frac) > maxDecimalDigits {
		return Decimal{}, fmt.Errorf("%w decimal %q: more than %d digits after the point", nii.ErrInvalid, s, maxDecimalDigits)
	}
	if n, err := strconv.ParseInt(digits, 10, 64); err == nil {
		if neg {
			n = -n
		}
		return Decimal{small: n, scale: len(frac)}, nil
	}
	b, _ := new(big.Int).SetString(digits, 10)
	if neg {
		b.Neg(b)
	}
	return NewDecimalBig(b, len(frac)), nil
}

// Scale is the number of digits after the point.
func (d Decimal) Scale() int { return d.scale }

// Unscaled returns the value × 10^scale as an integer (a fresh copy).
func (d Decimal) Unscaled() *big.Int {
	if d.big != nil {
		return new(big.Int).Set(d.big)
	}
	return big.NewInt(d.small)
}

// String returns the exact decimal text, e.g. "-1234.50".
func (d Decimal) String() string {
	var digits string
	neg := false
	if d.big != nil {
		neg = d.big.Sign() < 0
		digits = new(big.Int).Abs(d.big).String()
	} else {
		neg = d.small < 0
		digits = strconv.FormatUint(absUint(d.small), 10)
	}
	if d.scale > 0 {
		if len(digits) <= d.scale {
			digits = strings.Repeat("0", d.scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-d.scale] + "." + digits[len(digits)-d.scale:]
	} else if d.scale < 0 {
		digits += strings.Repeat("0", -d.scale)
	}
	if neg {
		return "-" + digits
	}
	return digits
}

// Float64 returns the nearest float64 (for display and charts, not sums).
func (d Decimal) Float64() float64 {
	f, _ := strconv.ParseFloat(d.String(), 64)
	return f
}

// MarshalJSON writes the exact decimal as a JSON number.
func (d Decimal) MarshalJSON() ([]byte, error) { return []byte(d.String()), nil }

// Equal reports whether d and e are the same number (1.5 equals 1.50).
func (d Decimal) Equal(e Decimal) bool {
	s := max(d.scale, e.scale)
	return d.rescaleBig(s).Cmp(e.rescaleBig(s)) == 0
}

func (d Decimal) rescaleBig(scale int) *big.Int {
	u := d.Unscaled()
	if scale > d.scale {
		u.Mul(u, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale-d.scale)), nil))
	}
	return u
}

// unscaledAt returns d's unscaled value at a column's scale, if it fits in
// 18 digits without losing any: the int64 a DECIMAL(18, scale) stores.
func (d Decimal) unscaledAt(scale int) (int64, error) {
	const max18 = 999_999_999_999_999_999
	if d.big == nil && d.scale <= scale {
		n := d.small
		for i := d.scale; i < scale; i++ {
			if n > max18/10 || n < -max18/10 {
				return 0, fmt.Errorf("decimal %s does not fit in 18 digits at scale %d", d, scale)
			}
			n *= 10
		}
		if n > max18 || n < -max18 {
			return 0, fmt.Errorf("decimal %s does not fit in 18 digits at scale %d", d, scale)
		}
		return n, nil
	}
	u := d.Unscaled()
	if d.scale > scale {
		q, r := new(big.Int).QuoRem(u, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.scale-scale)), nil), new(big.Int))
		if r.Sign() != 0 {
			return 0, fmt.Errorf("decimal %s has more than %d digits after the point", d, scale)
		}
		u = q
	} else {
		u = d.rescaleBig(scale)
	}
	if !u.IsInt64() || u.Int64() > max18 || u.Int64() < -max18 {
		return 0, fmt.Errorf("decimal %s does not fit in 18 digits at scale %d", d, scale)
	}
	return u.Int64(), nil
}

func absUint(n int64) uint64 {
	if n < 0 {
		return uint64(-(n + 1)) + 1
	}
	return uint64(n)
}
