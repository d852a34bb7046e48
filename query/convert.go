//go:build cgo

package query

import (
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// converter returns the function that checks one Go value for col and
// turns it into what DuckDB's appender takes for col's SQL type.
func converter(col Column) func(any) (driver.Value, error) {
	switch col.Type {
	case TypeString:
		return func(v any) (driver.Value, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case string:
				if !utf8.ValidString(x) {
					return nil, fmt.Errorf("text is not valid UTF-8: decode it first")
				}
				return v, nil // v, not x: re-boxing x would allocate per value
			}
			return nil, wantType("a string", v)
		}
	case TypeInteger:
		return func(v any) (driver.Value, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case int64:
				return v, nil
			case int:
				return int64(x), nil
			case int32:
				return int64(x), nil
			case int16:
				return int64(x), nil
			case int8:
				return int64(x), nil
			case uint32:
				return int64(x), nil
			case uint16:
				return int64(x), nil
			case uint8:
				return int64(x), nil
			case uint64:
				if x > math.MaxInt64 {
					return nil, fmt.Errorf("%d does not fit in a 64-bit integer", x)
				}
				return int64(x), nil
			}
			return nil, wantType("an integer", v)
		}
	case TypeNumber:
		return func(v any) (driver.Value, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case float64:
				return v, nil
			case float32:
				return float64(x), nil
			case int64:
				return float64(x), nil
			case int:
				return float64(x), nil
			}
			return nil, wantType("a number (float64)", v)
		}
	case TypeDecimal:
		scale := col.Scale
		return func(v any) (driver.Value, error) {
			var d Decimal
			switch x := v.(type) {
			case nil:
				return nil, nil
			case Decimal:
				d = x
			case string:
				var err error
				if d, err = ParseDecimal(x); err != nil {
					return nil, err
				}
			default:
				return nil, wantType("a query.Decimal or decimal text", v)
			}
			// A DECIMAL(18, s) column stores its unscaled int64.
			return d.unscaledAt(scale)
		}
	case TypeBoolean:
		return func(v any) (driver.Value, error) {
			switch v.(type) {
			case nil:
				return nil, nil
			case bool:
				return v, nil
			}
			return nil, wantType("a bool", v)
		}
	case TypeDate:
		return func(v any) (driver.Value, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case time.Time:
				y, m, d := x.Date()
				return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
			}
			return nil, wantType("a time.Time", v)
		}
	case TypeDatetime:
		return func(v any) (driver.Value, error) {
			switch x := v.(type) {
			case nil:
				return nil, nil
			case time.Time:
				return x.UTC(), nil
			}
			return nil, wantType("a time.Time", v)
		}
	}
	return func(any) (driver.Value, error) { return nil, fmt.Errorf("unknown column type %q", col.Type) }
}

func wantType(want string, v any) error {
	return fmt.Errorf("want %s, got %T", want, v)
}

// resultColumn types a result column from DuckDB's type name.
func resultColumn(name, sqlType string) Column {
	c := Column{Name: name, SQLType: sqlType, Type: TypeAny}
	base, _, _ := strings.Cut(sqlType, "(")
	switch base {
	case "VARCHAR", "UUID", "ENUM", "BLOB", "BIT", "JSON":
		c.Type = TypeString
	case "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "BIGNUM":
		c.Type = TypeInteger
	case "FLOAT", "DOUBLE":
		c.Type = TypeNumber
	case "DECIMAL":
		c.Type = TypeDecimal
		var w int
		fmt.Sscanf(sqlType, "DECIMAL(%d,%d)", &w, &c.Scale)
	case "BOOLEAN":
		c.Type = TypeBoolean
	case "DATE":
		c.Type = TypeDate
	case "TIME", "TIMETZ", "TIME WITH TIME ZONE", "TIME_NS":
		c.Type = TypeTime
	case "INTERVAL":
		c.Type = TypeDuration
	case "STRUCT", "MAP":
		c.Type = TypeObject
	}
	switch {
	case strings.HasPrefix(base, "TIMESTAMP"):
		c.Type = TypeDatetime
	case strings.HasSuffix(sqlType, "[]") || strings.HasSuffix(sqlType, "]"):
		c.Type = TypeArray
	}
	return c
}

// convertOut turns a value the driver returned into one of the package's
// own (see Result): no driver type reaches a caller.
func convertOut(v any) any {
	switch x := v.(type) {
	case nil, string, int64, float64, bool, time.Time:
		return x
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return x
	case float32:
		return float64(x)
	case *big.Int:
		if x.IsInt64() {
			return x.Int64()
		}
		return new(big.Int).Set(x)
	case duckdb.Decimal:
		if x.Value == nil {
			return nil
		}
		return NewDecimalBig(x.Value, int(x.Scale))
	case []byte:
		return append([]byte(nil), x...)
	case duckdb.UUID:
		return formatUUID(x[:])
	case *duckdb.UUID:
		if x == nil {
			return nil
		}
		return convertOut(*x)
	case duckdb.Interval:
		return formatInterval(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = convertOut(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = convertOut(e)
		}
		return out
	case duckdb.OrderedMap:
		keys, vals := x.Keys(), x.Values()
		out := make(map[string]any, len(keys))
		for i, k := range keys {
			out[fmt.Sprint(convertOut(k))] = convertOut(vals[i])
		}
		return out
	case duckdb.Map:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(convertOut(k))] = convertOut(e)
		}
		return out
	case duckdb.Union:
		return convertOut(x.Value)
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// formatInterval writes an interval as DuckDB prints one.
func formatInterval(i duckdb.Interval) string {
	var parts []string
	if y, m := i.Months/12, i.Months%12; y != 0 || m != 0 {
		if y != 0 {
			parts = append(parts, plural(int64(y), "year"))
		}
		if m != 0 {
			parts = append(parts, plural(int64(m), "month"))
		}
	}
	if i.Days != 0 {
		parts = append(parts, plural(int64(i.Days), "day"))
	}
	if i.Micros != 0 || len(parts) == 0 {
		us := i.Micros
		sign := ""
		if us < 0 {
			sign, us = "-", -us
		}
		s := fmt.Sprintf("%s%02d:%02d:%02d", sign, us/3_600_000_000, us/60_000_000%60, us/1_000_000%60)
		if f := us % 1_000_000; f != 0 {
			s += strings.TrimRight(fmt.Sprintf(".%06d", f), "0")
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func plural(n int64, unit string) string {
	if n == 1 || n == -1 {
		return fmt.Sprintf("%d %s", n, unit)
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
