package query

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/nii-uk/nii"
)

// Type is a column's type, named as in Frictionless Table Schema (the names
// nii.Column uses), plus "decimal" for exact money.
type Type string

// Column types Load accepts, and the Go values each takes (nil is NULL
// for every type).
const (
	TypeString   Type = "string"   // string → VARCHAR
	TypeInteger  Type = "integer"  // int64, int, int32 → BIGINT
	TypeNumber   Type = "number"   // float64 (or int64, int) → DOUBLE
	TypeDecimal  Type = "decimal"  // query.Decimal or a string such as "-1234.50" → DECIMAL(18, Scale)
	TypeBoolean  Type = "boolean"  // bool → BOOLEAN
	TypeDate     Type = "date"     // time.Time (its calendar date) → DATE
	TypeDatetime Type = "datetime" // time.Time (in UTC) → TIMESTAMP
)

// Result-only types: what a query's column can be besides the above.
const (
	TypeTime     Type = "time"     // time.Time (time of day)
	TypeDuration Type = "duration" // string, e.g. "1 month 2 days 03:04:05"
	TypeArray    Type = "array"    // []any
	TypeObject   Type = "object"   // map[string]any
	TypeAny      Type = "any"      // anything else, as a string
)

// MaxDecimalScale bounds a decimal column's digits after the point
// (DECIMAL(18, s): 18 significant digits in all).
const MaxDecimalScale = 17

// Column is one column of a loaded table or of a result.
type Column struct {
	Name string `json:"name"`
	Type Type   `json:"type"`
	// Scale is a decimal column's digits after the point (2 for pounds and
	// pence); 0 for other types.
	Scale int `json:"scale,omitempty"`
	// SQLType is DuckDB's name for the column's type, e.g. "DECIMAL(38,2)".
	// Set in results and in Tables; ignored by Load.
	SQLType string `json:"sql_type,omitempty"`
}

// RowSource streams a table's rows into Load. Next fills row (whose length
// is the number of columns) with the next row's values and returns nil, or
// returns io.EOF after the last row. Load does not keep row between calls.
type RowSource interface {
	Next(row []any) error
}

// RowsSource returns a RowSource over rows held in memory (small tables,
// tests). A row shorter than the table is padded with NULLs.
func RowsSource(rows [][]any) RowSource { return &sliceSource{rows: rows} }

type sliceSource struct {
	rows [][]any
	i    int
}

func (s *sliceSource) Next(row []any) error {
	if s.i >= len(s.rows) {
		return io.EOF
	}
	copy(row, s.rows[s.i])
	for j := len(s.rows[s.i]); j < len(row); j++ {
		row[j] = nil
	}
	s.i++
	return nil
}

// TableInfo describes a loaded table.
type TableInfo struct {
	Name    string   `json:"name"`
	Columns []Column `json:"columns"`
	Rows    int64    `json:"rows"`
}

// MaxNameLen bounds a table's name.
const MaxNameLen = 200

// nameRE is the shape of a table name: a dataset ref (org/name, org/name@N)
// or any other lowercase name made of the same characters.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@/-]*$`)

// CheckName reports whether name can name a loaded table: lowercase letters,
// digits and . _ @ / -, starting with a letter or digit, such as a dataset
// ref "lga/spend-over-500" or "gla/london-spend@4".
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w table name: empty", nii.ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w table name %.40q…: longer than %d characters", nii.ErrInvalid, name, MaxNameLen)
	case !nameRE.MatchString(name):
		return fmt.Errorf("%w table name %q: use lowercase letters, digits and . _ @ / -, starting with a letter or digit, e.g. lga/spend-over-500", nii.ErrInvalid, name)
	}
	return nil
}

// maxColumnName bounds a column's name.
const maxColumnName = 255

// checkColumns validates a table's columns for Load.
func checkColumns(cols []Column) error {
	if len(cols) == 0 {
		return fmt.Errorf("%w columns: a table needs at least one", nii.ErrInvalid)
	}
	seen := make(map[string]string, len(cols))
	for i, c := range cols {
		switch {
		case c.Name == "":
			return fmt.Errorf("%w column %d: empty name", nii.ErrInvalid, i+1)
		case len(c.Name) > maxColumnName:
			return fmt.Errorf("%w column %d: name longer than %d bytes", nii.ErrInvalid, i+1, maxColumnName)
		case !utf8.ValidString(c.Name) || strings.ContainsRune(c.Name, 0):
			return fmt.Errorf("%w column %d: name %q is not valid UTF-8 text", nii.ErrInvalid, i+1, c.Name)
		}
		// DuckDB's identifiers are case-insensitive: "Amount" and "amount"
		// would be one column.
		key := strings.ToLower(c.Name)
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("%w column %q: same name as column %q (SQL names ignore case)", nii.ErrInvalid, c.Name, prev)
		}
		seen[key] = c.Name
		switch c.Type {
		case TypeString, TypeInteger, TypeNumber, TypeBoolean, TypeDate, TypeDatetime:
			if c.Scale != 0 {
				return fmt.Errorf("%w column %q: scale is for decimal columns only", nii.ErrInvalid, c.Name)
			}
		case TypeDecimal:
			if c.Scale < 0 || c.Scale > MaxDecimalScale {
				return fmt.Errorf("%w column %q: decimal scale %d: want 0 to %d", nii.ErrInvalid, c.Name, c.Scale, MaxDecimalScale)
			}
		default:
			return fmt.Errorf("%w column %q: type %q: want string, integer, number, decimal, boolean, date or datetime", nii.ErrInvalid, c.Name, c.Type)
		}
	}
	return nil
}

// quoteIdent quotes a name as an SQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteString quotes s as an SQL string literal (DuckDB's standard strings
// treat only the quote itself specially).
func quoteString(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

// sqlType is the DuckDB column type for a load column.
func (c Column) sqlType() string {
	switch c.Type {
	case TypeString:
		return "VARCHAR"
	case TypeInteger:
		return "BIGINT"
	case TypeNumber:
		return "DOUBLE"
	case TypeDecimal:
		return fmt.Sprintf("DECIMAL(18,%d)", c.Scale)
	case TypeBoolean:
		return "BOOLEAN"
	case TypeDate:
		return "DATE"
	case TypeDatetime:
		return "TIMESTAMP"
	}
	return ""
}

func sortTables(ts []TableInfo) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
}
