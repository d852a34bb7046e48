package query

import (
	"bufio"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Result is what a query returned: its columns and rows of Go values.
//
// Each value is nil (NULL) or, by column type: string; int64 (uint64 or
// *big.Int past int64's range); float64; Decimal; bool; time.Time for date,
// datetime and time columns; string for durations; []any for arrays;
// map[string]any for objects; []byte for blobs; other types as strings.
type Result struct {
	Columns []Column `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// Truncated is true when the query produced more rows than Rows holds:
	// the row cap or the result-byte cap cut it. Notice says which.
	Truncated bool   `json:"truncated,omitempty"`
	Notice    string `json:"notice,omitempty"`
}

// maxCellRunes bounds a cell's width in WriteTable.
const maxCellRunes = 64

// WriteTable writes the result as an aligned text table for a terminal:
// a header, a rule, the rows (numbers right-aligned, NULL as NULL, control
// characters escaped so data cannot drive the terminal, long cells cut),
// then the row count and the truncation notice if any.
func (r *Result) WriteTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	n := len(r.Columns)
	cells := make([][]string, 0, len(r.Rows)+1)
	head := make([]string, n)
	for i, c := range r.Columns {
		head[i] = cellText(c.Name)
	}
	cells = append(cells, head)
	for _, row := range r.Rows {
		line := make([]string, n)
		for i := range n {
			var v any
			if i < len(row) {
				v = row[i]
			}
			if v == nil {
				line[i] = "NULL"
			} else {
				line[i] = cellText(textValue(r.Columns[i], v, true))
			}
		}
		cells = append(cells, line)
	}
	width := make([]int, n)
	for _, line := range cells {
		for i, s := range line {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	writeLine := func(line []string, rule bool) {
		for i, s := range line {
			if i > 0 {
				bw.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(s))
			switch {
			case rule:
				bw.WriteString(strings.Repeat("-", width[i]))
			case rightAligned(r.Columns[i].Type) && s != "NULL":
				bw.WriteString(pad + s)
			case i == len(line)-1:
				bw.WriteString(s)
			default:
				bw.WriteString(s + pad)
			}
		}
		bw.WriteByte('\n')
	}
	writeLine(head, false)
	writeLine(head, true)
	for _, line := range cells[1:] {
		writeLine(line, false)
	}
	if len(r.Rows) == 1 {
		bw.WriteString("(1 row)\n")
	} else {
		fmt.Fprintf(bw, "(%d rows)\n", len(r.Rows))
	}
	if r.Truncated {
		fmt.Fprintf(bw, "(%s)\n", r.Notice)
	}
	return bw.Flush()
}

// WriteJSON writes the rows as a JSON array of objects, one per row, keys
// in column order. Decimals are exact JSON numbers; dates are "2006-01-02",
// datetimes RFC 3339 in UTC; NaN and infinities are null. The truncation
// notice is not in the JSON: print Notice beside it.
func (r *Result) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriter(w)
	keys := make([][]byte, len(r.Columns))
	for i, c := range r.Columns {
		keys[i], _ = json.Marshal(c.Name)
	}
	bw.WriteByte('[')
	var buf []byte
	for j, row := range r.Rows {
		if j > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n{")
		for i, c := range r.Columns {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.Write(keys[i])
			bw.WriteByte(':')
			var v any
			if i < len(row) {
				v = row[i]
			}
			buf = appendJSON(buf[:0], c.Type, v)
			bw.Write(buf)
		}
		bw.WriteByte('}')
	}
	if len(r.Rows) > 0 {
		bw.WriteByte('\n')
	}
	bw.WriteString("]\n")
	return bw.Flush()
}

// WriteCSV writes a header line and the rows as RFC 4180 CSV (UTF-8, no
// BOM). NULL is an empty field; values are written as WriteJSON writes
// them, arrays and objects as JSON text.
func (r *Result) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	line := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		line[i] = c.Name
	}
	if err := cw.Write(line); err != nil {
		return err
	}
	for _, row := range r.Rows {
		for i, c := range r.Columns {
			line[i] = ""
			if i < len(row) && row[i] != nil {
				line[i] = textValue(c, row[i], false)
			}
		}
		if err := cw.Write(line); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func rightAligned(t Type) bool {
	return t == TypeInteger || t == TypeNumber || t == TypeDecimal
}

// cellText makes s safe and short for a terminal cell.
func cellText(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxCellRunes-1 {
			b.WriteRune('…')
			return b.String()
		}
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case unicode.IsControl(r) || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		n++
	}
	return b.String()
}

// textValue formats one non-nil value as text; human picks the terminal's
// forms (a space in datetimes) over the machine ones.
func textValue(c Column, v any, human bool) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return formatFloat(x)
	case bool:
		return strconv.FormatBool(x)
	case Decimal:
		return x.String()
	case *big.Int:
		return x.String()
	case time.Time:
		return formatTime(c.Type, x, human)
	case []byte:
		return `\x` + hex.EncodeToString(x)
	case []any, map[string]any:
		return string(appendJSON(nil, TypeAny, x))
	}
	return fmt.Sprint(v)
}

func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case math.Abs(f) < 1e15:
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func formatTime(t Type, x time.Time, human bool) string {
	switch t {
	case TypeDate:
		return x.Format(time.DateOnly)
	case TypeTime:
		return x.Format("15:04:05.999999")
	}
	if human {
		return x.UTC().Format("2006-01-02 15:04:05.999999999")
	}
	return x.UTC().Format(time.RFC3339Nano)
}

// appendJSON appends v as JSON. t is the column's type (TypeAny inside
// arrays and objects, where times are written in RFC 3339).
func appendJSON(buf []byte, t Type, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...)
	case string:
		b, _ := json.Marshal(x)
		return append(buf, b...)
	case int64:
		return strconv.AppendInt(buf, x, 10)
	case uint64:
		return strconv.AppendUint(buf, x, 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return append(buf, "null"...)
		}
		return append(buf, formatFloat(x)...)
	case bool:
		return strconv.AppendBool(buf, x)
	case Decimal:
		return append(buf, x.String()...)
	case *big.Int:
		return append(buf, x.String()...)
	case time.Time:
		b, _ := json.Marshal(formatTime(t, x, false))
		return append(buf, b...)
	case []byte:
		b, _ := json.Marshal(`\x` + hex.EncodeToString(x))
		return append(buf, b...)
	case []any:
		buf = append(buf, '[')
		for i, e := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSON(buf, TypeAny, e)
		}
		return append(buf, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			b, _ := json.Marshal(k)
			buf = append(buf, b...)
			buf = append(buf, ':')
			buf = appendJSON(buf, TypeAny, x[k])
		}
		return append(buf, '}')
	}
	b, _ := json.Marshal(fmt.Sprint(v))
	return append(buf, b...)
}

// valueSize estimates the memory a result value holds, for the byte cap.
func valueSize(v any) int64 {
	const word = 16 // an interface value
	switch x := v.(type) {
	case string:
		return word + int64(len(x))
	case []byte:
		return word + 24 + int64(len(x))
	case *big.Int:
		return word + 8 + int64(len(x.Bits())*8)
	case Decimal:
		return word + 32
	case time.Time:
		return word + 24
	case []any:
		n := int64(word + 24)
		for _, e := range x {
			n += valueSize(e)
		}
		return n
	case map[string]any:
		n := int64(word + 48)
		for k, e := range x {
			n += int64(len(k)) + 16 + valueSize(e)
		}
		return n
	}
	return word
}

// WriteDocument writes the whole result as one JSON object: the columns
// (name, type, scale, sql_type), the rows as arrays of values (as
// WriteJSON writes them: exact decimals, ISO dates, null), and whether
// and why the result was cut:
//
//	{"columns":[{"name":"n","type":"integer","sql_type":"BIGINT"}],"rows":[[1]],"truncated":false}
func (r *Result) WriteDocument(w io.Writer) error {
	bw := bufio.NewWriter(w)
	cols, err := json.Marshal(r.Columns)
	if err != nil {
		return err
	}
	bw.WriteString(`{"columns":`)
	bw.Write(cols)
	bw.WriteString(`,"rows":[`)
	var buf []byte
	for j, row := range r.Rows {
		if j > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n[")
		for i, c := range r.Columns {
			if i > 0 {
				bw.WriteByte(',')
			}
			var v any
			if i < len(row) {
				v = row[i]
			}
			buf = appendJSON(buf[:0], c.Type, v)
			bw.Write(buf)
		}
		bw.WriteByte(']')
	}
	fmt.Fprintf(bw, "],\n\"truncated\":%t", r.Truncated)
	if r.Notice != "" {
		notice, _ := json.Marshal(r.Notice)
		bw.WriteString(`,"notice":`)
		bw.Write(notice)
	}
	bw.WriteString("}\n")
	return bw.Flush()
}
