package node

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/query"
	"github.com/nii-uk/nii/registry/table"
)

// How the SQL tables get their rows and types (docs/query.md, "Types").

// mergedDecimalScale: merged numbers are exact to 1/10,000 (harmony's
// fixed point).
const mergedDecimalScale = 4

// mergedTable is the SQL table of a merged view, typed from its standard.
func mergedTable(v *MergedView) *sqlTable {
	name := v.Standard.Dataset.String()
	if query.CheckName(name) != nil || v.Rows == nil || len(v.Columns) == 0 {
		return nil
	}
	cols := make([]query.Column, len(v.Columns))
	conv := make([]func(string) (any, error), len(v.Columns))
	for i, c := range v.Columns {
		cols[i], conv[i] = mergedColumn(c)
		cols[i].SQLType = sqlTypeName(cols[i])
	}
	rows := v.Rows
	return &sqlTable{
		name:    name,
		kind:    sqlKindMerged,
		open:    v.Open,
		key:     "merged:" + v.Key,
		rows:    -1,
		source:  fmt.Sprintf("merged view of %s from %d source versions", v.Standard, v.Sources),
		columns: cols,
		load: func(ctx context.Context) (*sqlLoad, error) {
			src := startPush(ctx, len(cols), func(ctx context.Context, emit func([]string) error) error {
				return rows(ctx, emit)
			}, func(rec []string, row []any) error {
				for i, s := range rec {
					v, err := conv[i](s)
					if err != nil {
						return fmt.Errorf("merged column %q: %w", cols[i].Name, err)
					}
					row[i] = v
				}
				return nil
			})
			return &sqlLoad{cols: cols, rows: src, close: src.Close}, nil
		},
	}
}

// mergedColumn types a merged column from its Table Schema type, and
// returns the parser of its canonical text.
func mergedColumn(c harmony.Column) (query.Column, func(string) (any, error)) {
	col := query.Column{Name: c.Name}
	switch c.Type {
	case "number":
		col.Type, col.Scale = query.TypeDecimal, mergedDecimalScale
		return col, func(s string) (any, error) {
			if s == "" {
				return nil, nil
			}
			return s, nil // decimal text; the engine parses it exactly
		}
	case "integer", "year":
		col.Type = query.TypeInteger
		return col, func(s string) (any, error) {
			if s == "" {
				return nil, nil
			}
			return strconv.ParseInt(s, 10, 64)
		}
	case "boolean":
		col.Type = query.TypeBoolean
		return col, func(s string) (any, error) {
			if s == "" {
				return nil, nil
			}
			return strconv.ParseBool(s)
		}
	case "date":
		col.Type = query.TypeDate
		return col, func(s string) (any, error) {
			if s == "" {
				return nil, nil
			}
			return time.Parse(time.DateOnly, s)
		}
	case "datetime":
		col.Type = query.TypeDatetime
		return col, func(s string) (any, error) {
			if s == "" {
				return nil, nil
			}
			return time.Parse(time.RFC3339, s)
		}
	}
	col.Type = query.TypeString
	return col, func(s string) (any, error) {
		if s == "" {
			return nil, nil
		}
		return s, nil
	}
}

func sqlTypeName(c query.Column) string {
	switch c.Type {
	case query.TypeString:
		return "VARCHAR"
	case query.TypeInteger:
		return "BIGINT"
	case query.TypeNumber:
		return "DOUBLE"
	case query.TypeDecimal:
		return fmt.Sprintf("DECIMAL(18,%d)", c.Scale)
	case query.TypeBoolean:
		return "BOOLEAN"
	case query.TypeDate:
		return "DATE"
	case query.TypeDatetime:
		return "TIMESTAMP"
	}
	return ""
}

// datasetTable is the SQL table of one tabular dataset version. Its types
// are the profiler's, checked against every cell of the file when it is
// loaded: a column keeps its profiled type only if every non-empty cell
// parses as it, and is loaded as text otherwise (with a note saying so).
// No cell is ever loaded as NULL or as another value because it did not
// parse; empty cells are NULL.
func (s *sqlService) datasetTable(rec *exchange.VersionRecord, name string) *sqlTable {
	tab := rec.Meta.Table
	cols := datasetColumns(tab)
	t := &sqlTable{
		name:    name,
		kind:    sqlKindDataset,
		open:    rec.Meta.Access != nii.AccessRestricted,
		key:     "dataset:" + rec.Manifest.String(),
		rows:    tab.Rows,
		source:  fmt.Sprintf("%s, %d rows", rec.Ref, tab.Rows),
		columns: make([]query.Column, len(cols)),
	}
	for i, c := range cols {
		t.columns[i] = query.Column{Name: c.name, Type: profiledType(c.profiled.Type)}
		t.columns[i].SQLType = sqlTypeName(t.columns[i])
	}
	t.notes = []string{"column types are the profiler's, checked against every cell when the table is first loaded"}
	t.load = func(ctx context.Context) (*sqlLoad, error) {
		cols := datasetColumns(tab)
		// Pass 1: check every cell against its column's profiled type.
		err := s.readContent(ctx, rec, func(r *table.Reader) error {
			for {
				recd, err := r.Read()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				for i := range cols {
					if i < len(recd) {
						cols[i].check(strings.TrimSpace(recd[i]), r.Line())
					}
				}
			}
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", rec.Ref, err)
		}
		qcols := make([]query.Column, len(cols))
		var notes []string
		for i := range cols {
			qcols[i] = cols[i].decide()
			if cols[i].note != "" {
				notes = append(notes, cols[i].note)
			}
		}
		// Pass 2: the rows, converted by the decided types.
		var extra struct {
			rows, first int
		}
		src := startPush(ctx, len(cols), func(ctx context.Context, emit func([]string) error) error {
			return s.readContent(ctx, rec, func(r *table.Reader) error {
				padded := make([]string, len(cols))
				for {
					recd, err := r.Read()
					if err == io.EOF {
						return nil
					}
					if err != nil {
						return err
					}
					if len(recd) > len(cols) && !blank(recd[len(cols):]) {
						if extra.rows == 0 {
							extra.first = r.Line()
						}
						extra.rows++
					}
					n := copy(padded, recd)
					clear(padded[n:])
					if err := emit(padded); err != nil {
						return err
					}
				}
			})
		}, func(recd []string, row []any) error {
			for i := range cols {
				v, err := cols[i].value(strings.TrimSpace(recd[i]))
				if err != nil {
					return err
				}
				row[i] = v
			}
			return nil
		})
		return &sqlLoad{cols: qcols, rows: src, close: src.Close, notes: func() []string {
			if extra.rows > 0 {
				notes = append(notes, fmt.Sprintf("%d rows have cells past the header's %d columns (the first at line %d): those cells are not loaded", extra.rows, len(cols), extra.first))
			}
			return notes
		}}, nil
	}
	return t
}

func blank(cells []string) bool {
	for _, c := range cells {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// readContent streams a version's verified content through a table
// reader to fn.
func (s *sqlService) readContent(ctx context.Context, rec *exchange.VersionRecord, fn func(*table.Reader) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := s.n.store.WriteTo(ctx, rec, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := fn(table.NewReader(pr, rec.Meta.Table))
	pr.CloseWithError(fmt.Errorf("stopped reading"))
	werr := <-done
	if err == nil && werr != nil {
		err = werr
	}
	return err
}

// profiledType is the SQL type a profiled column would get if every cell
// parses (numbers may still become decimals or doubles by their digits).
func profiledType(t string) query.Type {
	switch t {
	case "integer", "year":
		return query.TypeInteger
	case "number":
		return query.TypeDecimal
	case "boolean":
		return query.TypeBoolean
	case "date":
		return query.TypeDate
	case "datetime":
		return query.TypeDatetime
	}
	return query.TypeString
}

// datasetColumn is one column of a dataset: its profile, and what pass 1
// learnt of its cells.
type datasetColumn struct {
	name     string
	profiled nii.Column

	cells, fails int
	firstLine    int
	firstValue   string
	scale        int // most digits after the point (numbers)
	intDigits    int // most digits before it
	exp          bool
	typ          query.Type // decided
	note         string
}

// maxSQLColumnName bounds a column's name (query's limit).
const maxSQLColumnName = 255

// datasetColumns names a profile's columns for SQL: names unique without
// regard to case (a repeat gets "_2", "_3"…), at most 255 bytes.
func datasetColumns(t *nii.Table) []datasetColumn {
	cols := make([]datasetColumn, len(t.Columns))
	seen := map[string]bool{}
	for i, c := range t.Columns {
		name := c.Name
		if name == "" || !utf8.ValidString(name) {
			name = fmt.Sprintf("column_%d", i+1)
		}
		for len(name) > maxSQLColumnName {
			_, size := utf8.DecodeLastRuneInString(name)
			name = name[:len(name)-size]
		}
		base := name
		for k := 2; seen[strings.ToLower(name)]; k++ {
			name = fmt.Sprintf("%s_%d", base, k)
		}
		seen[strings.ToLower(name)] = true
		cols[i] = datasetColumn{name: name, profiled: c}
	}
	return cols
}

// check tallies one trimmed cell against the profiled type.
func (c *datasetColumn) check(s string, line int) {
	if s == "" {
		return
	}
	c.cells++
	ok := true
	switch c.profiled.Type {
	case "integer", "year":
		_, ok = table.ParseInteger(s)
	case "number":
		var plain string
		var scale int
		var exp bool
		plain, scale, exp, ok = table.ParseNumber(s)
		if ok {
			c.exp = c.exp || exp
			c.scale = max(c.scale, scale)
			digits := strings.TrimLeft(strings.TrimPrefix(plain, "-"), "0")
			if i := strings.IndexByte(digits, '.'); i >= 0 {
				digits = digits[:i]
			}
			c.intDigits = max(c.intDigits, len(digits))
		}
	case "boolean":
		_, ok = table.ParseBoolean(s)
	case "date":
		_, ok = table.ParseDate(s, c.profiled.Format)
	case "datetime":
		_, ok = table.ParseDatetime(s, c.profiled.Format)
	}
	if !ok {
		if c.fails == 0 {
			c.firstLine, c.firstValue = line, s
		}
		c.fails++
	}
}

// Decimal columns: DECIMAL(18, scale) holds 18 digits in all.
const maxDecimalDigits, maxDatasetScale = 18, 6

// decide picks the column's SQL type once every cell has been checked.
func (c *datasetColumn) decide() query.Column {
	c.typ = profiledType(c.profiled.Type)
	col := query.Column{Name: c.name}
	if c.fails > 0 {
		c.note = fmt.Sprintf("column %q: profiled as %s, but %d of %d cells are not (the first at line %d: %q): loaded as text", c.name, c.profiled.Type, c.fails, c.cells, c.firstLine, truncateNote(c.firstValue))
		c.typ = query.TypeString
	}
	if c.typ == query.TypeDecimal && (c.exp || c.scale > maxDatasetScale || c.intDigits+c.scale > maxDecimalDigits) {
		c.typ = query.TypeNumber
		c.note = fmt.Sprintf("column %q: numbers with exponents or more than %d digits are loaded as DOUBLE (binary floating point)", c.name, maxDecimalDigits)
	}
	col.Type = c.typ
	if c.typ == query.TypeDecimal {
		col.Scale = c.scale
	}
	return col
}

func truncateNote(s string) string {
	if utf8.RuneCountInString(s) <= 40 {
		return s
	}
	r := []rune(s)
	return string(r[:40]) + "…"
}

// value converts one trimmed cell to the decided type. Every cell parsed
// in pass 1, so an error here means the content changed under us.
func (c *datasetColumn) value(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	bad := func() (any, error) {
		return nil, fmt.Errorf("%w: column %q: %q no longer parses as %s", nii.ErrCorrupt, c.name, s, c.typ)
	}
	switch c.typ {
	case query.TypeInteger:
		n, ok := table.ParseInteger(s)
		if !ok {
			return bad()
		}
		return n, nil
	case query.TypeDecimal, query.TypeNumber:
		plain, _, _, ok := table.ParseNumber(s)
		if !ok {
			return bad()
		}
		if c.typ == query.TypeDecimal {
			return plain, nil
		}
		f, err := strconv.ParseFloat(plain, 64)
		if err != nil {
			return bad()
		}
		return f, nil
	case query.TypeBoolean:
		b, ok := table.ParseBoolean(s)
		if !ok {
			return bad()
		}
		return b, nil
	case query.TypeDate:
		t, ok := table.ParseDate(s, c.profiled.Format)
		if !ok {
			return bad()
		}
		return t, nil
	case query.TypeDatetime:
		t, ok := table.ParseDatetime(s, c.profiled.Format)
		if !ok {
			return bad()
		}
		return t, nil
	}
	return s, nil
}

// pushRows turns a function that pushes records (a merge's EachRow, a
// CSV read) into a query.RowSource: the function runs on its own
// goroutine, handing batches of records over a channel; Close stops it
// and waits for it.
type pushRows struct {
	ncols  int
	conv   func(rec []string, row []any) error
	ch     chan []string
	errc   chan error
	cancel context.CancelFunc
	wg     sync.WaitGroup

	batch []string
	i     int
	done  bool
}

// pushBatch is the records handed over at once.
const pushBatch = 1024

func startPush(ctx context.Context, ncols int, run func(ctx context.Context, emit func([]string) error) error, conv func(rec []string, row []any) error) *pushRows {
	ctx, cancel := context.WithCancel(ctx)
	p := &pushRows{ncols: ncols, conv: conv, ch: make(chan []string, 2), errc: make(chan error, 1), cancel: cancel}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(p.ch)
		buf := make([]string, 0, pushBatch*ncols)
		send := func() error {
			select {
			case p.ch <- buf:
				buf = make([]string, 0, pushBatch*ncols)
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		err := run(ctx, func(rec []string) error {
			if len(rec) != ncols {
				return fmt.Errorf("a row of %d cells for %d columns", len(rec), ncols)
			}
			buf = append(buf, rec...)
			if len(buf) >= pushBatch*ncols {
				return send()
			}
			return nil
		})
		if err == nil && len(buf) > 0 {
			err = send()
		}
		p.errc <- err
	}()
	return p
}

func (p *pushRows) Next(row []any) error {
	for p.i >= len(p.batch) {
		if p.done {
			return io.EOF
		}
		b, ok := <-p.ch
		if !ok {
			p.done = true
			if err := <-p.errc; err != nil {
				return err
			}
			return io.EOF
		}
		p.batch, p.i = b, 0
	}
	rec := p.batch[p.i : p.i+p.ncols]
	p.i += p.ncols
	return p.conv(rec, row)
}

// Close stops the producer and waits for it.
func (p *pushRows) Close() {
	p.cancel()
	for range p.ch {
	}
	p.wg.Wait()
}
