package query

// The SQL worker's wire format: how the daemon (Worker, client.go) and the
// worker process (ServeWorker, worker.go) talk over the worker's stdin and
// stdout. It is documented in docs/query.md ("The worker").
//
// A frame is
//
//	uint32 length (big-endian) of what follows
//	byte   message type (msg* below)
//	uvarint request id (0 for hello and ready)
//	payload
//
// Payloads are built from uvarints, varints, length-prefixed strings and
// tagged values (appendValue). Every decoder bounds what it reads by the
// bytes it has: a worker is not trusted by the daemon (it runs untrusted
// SQL), so nothing it sends may make the daemon panic or allocate more
// than the frame it sent.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"time"

	"github.com/nii-uk/nii"
)

// Message types. Daemon to worker:
const (
	msgHello     byte = 1 // config: the engine's limits; the first frame
	msgQuery     byte = 2 // sql text
	msgLoadBegin byte = 3 // table name, columns
	msgLoadRows  byte = 4 // row count, then that many rows of tagged values
	msgLoadEnd   byte = 5 // no payload: the rows are complete
	msgDrop      byte = 6 // table name
	msgCancel    byte = 7 // no payload: stop request id (a query or a load)
)

// Worker to daemon:
const (
	msgReady  byte = 64 // pid, address-space limit set, engine version
	msgResult byte = 65 // a query's result
	msgError  byte = 66 // error kind, message
	msgLoaded byte = 67 // rows loaded, engine memory in bytes after the load
	msgCredit byte = 68 // the worker consumed one batch of a load: send another
	msgDone   byte = 69 // a drop finished
)

// Frame size caps. A batch of rows is cut at batchBytes; results are at
// most MaxResultBytes of Go values, whose encoding is no larger.
const (
	maxFrameHeader = 4
	batchBytes     = 256 << 10
	maxToWorker    = 16 << 20
	// loadWindow is the batches a load may have in flight unconsumed.
	loadWindow = 4
	// maxValueDepth bounds the nesting of lists and structs in a value.
	maxValueDepth = 32
)

// Error kinds on the wire, so the daemon's errors wrap the same sentinels
// the engine's do.
const (
	kindOther    byte = 0
	kindRefused  byte = 1
	kindTimeout  byte = 2
	kindMemory   byte = 3
	kindNotFound byte = 4
	kindInvalid  byte = 5
	kindClosed   byte = 6
)

func errorKind(err error) byte {
	switch {
	case errors.Is(err, ErrRefused):
		return kindRefused
	case errors.Is(err, ErrTimeout):
		return kindTimeout
	case errors.Is(err, ErrMemory):
		return kindMemory
	case errors.Is(err, ErrNotFound):
		return kindNotFound
	case errors.Is(err, ErrClosed):
		return kindClosed
	case errors.Is(err, nii.ErrInvalid):
		return kindInvalid
	}
	return kindOther
}

// wireError is an error the worker reported: its message as the worker
// wrote it, of the kind it said.
type wireError struct {
	kind error
	msg  string
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.kind }

func kindError(kind byte, msg string) error {
	var k error
	switch kind {
	case kindRefused:
		k = ErrRefused
	case kindTimeout:
		k = ErrTimeout
	case kindMemory:
		k = ErrMemory
	case kindNotFound:
		k = ErrNotFound
	case kindClosed:
		k = ErrClosed
	case kindInvalid:
		k = nii.ErrInvalid
	default:
		return errors.New(msg)
	}
	return &wireError{kind: k, msg: msg}
}

// errFrame: a frame broke the format.
var errFrame = errors.New("sql worker protocol: malformed frame")

// frame is one decoded frame.
type frame struct {
	typ     byte
	id      uint64
	payload []byte
}

// writeFrame writes one frame. The caller serialises writers.
func writeFrame(w io.Writer, typ byte, id uint64, payload []byte) error {
	var head [maxFrameHeader + 1 + binary.MaxVarintLen64]byte
	n := maxFrameHeader
	head[n] = typ
	n++
	n += binary.PutUvarint(head[n:], id)
	binary.BigEndian.PutUint32(head[:4], uint32(n-maxFrameHeader+len(payload)))
	if _, err := w.Write(head[:n]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame of at most max bytes into buf (reused when it
// is large enough).
func readFrame(r *bufio.Reader, max int, buf []byte) (frame, []byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return frame{}, buf, err
	}
	n := int(binary.BigEndian.Uint32(head[:]))
	if n < 2 || n > max {
		return frame{}, buf, fmt.Errorf("%w: %d bytes (at most %d)", errFrame, n, max)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, buf, err
	}
	f := frame{typ: buf[0]}
	id, k := binary.Uvarint(buf[1:])
	if k <= 0 {
		return frame{}, buf, errFrame
	}
	f.id = id
	f.payload = buf[1+k:]
	return f, buf, nil
}

// decoder reads a payload; the first error sticks and every later read
// returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errFrame
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// count reads a length or count that each element needs at least one byte
// of the payload for, so a lying count cannot make the decoder allocate.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) int() int {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errFrame
	}
	return d.err
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Value tags.
const (
	tagNil byte = iota
	tagString
	tagInt
	tagUint
	tagBig
	tagFloat
	tagDecimal
	tagBigDecimal
	tagFalse
	tagTrue
	tagTime
	tagBytes
	tagList
	tagMap
)

// appendValue appends one value of the types Load takes and Query returns.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, tagNil), nil
	case string:
		return appendStr(append(b, tagString), x), nil
	case int64:
		return binary.AppendVarint(append(b, tagInt), x), nil
	case int:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case int32:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case int16:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case int8:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case uint8:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case uint16:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case uint32:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case uint64:
		return binary.AppendUvarint(append(b, tagUint), x), nil
	case *big.Int:
		return appendBig(append(b, tagBig), x), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(x)), nil
	case float32:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(float64(x))), nil
	case Decimal:
		if x.big != nil {
			b = binary.AppendUvarint(append(b, tagBigDecimal), uint64(x.scale))
			return appendBig(b, x.big), nil
		}
		b = binary.AppendUvarint(append(b, tagDecimal), uint64(x.scale))
		return binary.AppendVarint(b, x.small), nil
	case bool:
		if x {
			return append(b, tagTrue), nil
		}
		return append(b, tagFalse), nil
	case time.Time:
		b = binary.AppendVarint(append(b, tagTime), x.Unix())
		return binary.AppendUvarint(b, uint64(x.Nanosecond())), nil
	case []byte:
		b = binary.AppendUvarint(append(b, tagBytes), uint64(len(x)))
		return append(b, x...), nil
	case []any:
		b = binary.AppendUvarint(append(b, tagList), uint64(len(x)))
		for _, e := range x {
			var err error
			if b, err = appendValue(b, e); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		b = binary.AppendUvarint(append(b, tagMap), uint64(len(x)))
		for k, e := range x {
			b = appendStr(b, k)
			var err error
			if b, err = appendValue(b, e); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return b, fmt.Errorf("%w: a value of Go type %T cannot be loaded (want string, integer, float64, query.Decimal, bool or time.Time)", nii.ErrInvalid, v)
}

func appendBig(b []byte, x *big.Int) []byte {
	sign := byte(0)
	if x.Sign() < 0 {
		sign = 1
	}
	b = append(b, sign)
	mag := x.Bytes()
	b = binary.AppendUvarint(b, uint64(len(mag)))
	return append(b, mag...)
}

// maxBigBytes bounds a big integer's magnitude on the wire (DuckDB's widest
// integers are 128 bits; BIGNUM values are capped here).
const maxBigBytes = 1 << 10

func (d *decoder) big() *big.Int {
	sign := d.byte1()
	mag := d.bytes()
	if d.err != nil || sign > 1 || len(mag) > maxBigBytes {
		d.fail()
		return nil
	}
	x := new(big.Int).SetBytes(mag)
	if sign == 1 {
		x.Neg(x)
	}
	return x
}

// value decodes one tagged value.
func (d *decoder) value(depth int) any {
	if depth > maxValueDepth {
		d.fail()
		return nil
	}
	switch d.byte1() {
	case tagNil:
		return nil
	case tagString:
		return d.str()
	case tagInt:
		return d.varint()
	case tagUint:
		return d.uvarint()
	case tagBig:
		return d.big()
	case tagFloat:
		if len(d.b) < 8 {
			d.fail()
			return nil
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
		d.b = d.b[8:]
		return f
	case tagDecimal:
		scale := d.uvarint()
		small := d.varint()
		if scale > 38 {
			d.fail()
			return nil
		}
		return NewDecimal(small, int(scale))
	case tagBigDecimal:
		scale := d.uvarint()
		x := d.big()
		if d.err != nil || scale > 38 {
			d.fail()
			return nil
		}
		return NewDecimalBig(x, int(scale))
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagTime:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= 1e9 {
			d.fail()
			return nil
		}
		return time.Unix(sec, int64(nsec)).UTC()
	case tagBytes:
		return append([]byte(nil), d.bytes()...)
	case tagList:
		n := d.count()
		out := make([]any, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			out = append(out, d.value(depth+1))
		}
		return out
	case tagMap:
		n := d.count()
		out := make(map[string]any, min(n, 64))
		for i := 0; i < n && d.err == nil; i++ {
			k := d.str()
			out[k] = d.value(depth + 1)
		}
		return out
	}
	d.fail()
	return nil
}

// appendColumns and columns carry a table's or a result's columns.
func appendColumns(b []byte, cols []Column) []byte {
	b = binary.AppendUvarint(b, uint64(len(cols)))
	for _, c := range cols {
		b = appendStr(b, c.Name)
		b = appendStr(b, string(c.Type))
		b = binary.AppendVarint(b, int64(c.Scale))
		b = appendStr(b, c.SQLType)
	}
	return b
}

func (d *decoder) columns() []Column {
	n := d.count()
	cols := make([]Column, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		cols = append(cols, Column{Name: d.str(), Type: Type(d.str()), Scale: d.int(), SQLType: d.str()})
	}
	return cols
}

// appendResult encodes a query's result.
func appendResult(b []byte, r *Result) ([]byte, error) {
	b = appendColumns(b, r.Columns)
	if r.Truncated {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendStr(b, r.Notice)
	b = binary.AppendUvarint(b, uint64(len(r.Rows)))
	for _, row := range r.Rows {
		if len(row) != len(r.Columns) {
			return b, fmt.Errorf("sql worker: a row of %d values for %d columns", len(row), len(r.Columns))
		}
		for _, v := range row {
			var err error
			if b, err = appendValue(b, v); err != nil {
				return b, err
			}
		}
	}
	return b, nil
}

// decodeResult decodes a result frame's payload.
func decodeResult(p []byte) (*Result, error) {
	d := &decoder{b: p}
	r := &Result{Columns: d.columns()}
	r.Truncated = d.byte1() == 1
	r.Notice = d.str()
	n := d.count()
	if len(r.Columns) == 0 && n > 0 {
		d.fail()
	}
	r.Rows = make([][]any, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		row := make([]any, len(r.Columns))
		for j := range row {
			row[j] = d.value(0)
		}
		r.Rows = append(r.Rows, row)
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return r, nil
}

// workerHello is the configuration the daemon sends first.
type workerHello struct {
	cfg          Config
	addressSpace int64 // RLIMIT_AS in bytes; 0: none
	cpuBudget    time.Duration
}

func appendHello(b []byte, h workerHello) []byte {
	c := h.cfg
	for _, v := range []int64{c.MemoryLimit, int64(c.Threads), int64(c.Timeout), int64(c.MaxRows), c.MaxResultBytes,
		int64(c.MaxSQLBytes), int64(c.MaxConcurrent), h.addressSpace, int64(h.cpuBudget)} {
		b = binary.AppendVarint(b, v)
	}
	return b
}

func decodeHello(p []byte) (workerHello, error) {
	d := &decoder{b: p}
	var h workerHello
	h.cfg.MemoryLimit = d.varint()
	h.cfg.Threads = d.int()
	h.cfg.Timeout = time.Duration(d.varint())
	h.cfg.MaxRows = d.int()
	h.cfg.MaxResultBytes = d.varint()
	h.cfg.MaxSQLBytes = d.int()
	h.cfg.MaxConcurrent = d.int()
	h.addressSpace = d.varint()
	h.cpuBudget = time.Duration(d.varint())
	return h, d.done()
}
