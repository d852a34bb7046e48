// Package chunker cuts a byte stream into content-defined chunks.
//
// It cuts exactly where the FastCDC of github.com/PlakarKorp/go-cdc-chunkers
// does (the spec-faithful "fastcdc-v1.0.0" variant, whose cut points are
// frozen by its version name; a test compares the two), with its own faster
// loop over large read buffers, behind a small Next-style API, and fixes
// nii's chunk bounds. Content-defined cut points move with the content, so an edit to one
// row of a large CSV changes one or two chunks, not every chunk after it.
//
// The bounds (8 KiB min, 32 KiB average, 128 KiB max) were chosen by
// measurement; docs/storage.md gives the figures.
package chunker

import (
	"errors"
	"fmt"
	"io"

	"math/bits"

	"github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc"
)

// Algorithm is the go-cdc-chunkers algorithm name. Its version is part of the
// name so that an upgraded library cannot silently move cut points.
const Algorithm = "fastcdc-v1.0.0"

// Params are a chunker's bounds in bytes.
type Params struct {
	Min, Avg, Max int
}

// Default returns nii's chunk bounds.
func Default() Params { return Params{Min: 8 << 10, Avg: 32 << 10, Max: 128 << 10} }

// String names the algorithm and bounds, as recorded in manifests.
func (p Params) String() string { return fmt.Sprintf("%s/%d/%d/%d", Algorithm, p.Min, p.Avg, p.Max) }

// Validate checks 64 ≤ min < avg < max, that avg is a power of two (as
// fastcdc-v1.0.0 requires) and that max fits nii's chunk limit.
func (p Params) Validate() error {
	if p.Min < 64 || p.Min >= p.Avg || p.Avg >= p.Max || p.Max > 1<<20 || p.Avg&(p.Avg-1) != 0 {
		return fmt.Errorf("chunker bounds %d/%d/%d: want 64 ≤ min < avg < max ≤ 1 MiB, avg a power of two", p.Min, p.Avg, p.Max)
	}
	return nil
}

// Chunker returns successive chunks of a stream.
//
// It reads the stream into large slabs and cuts chunks inside them, so a
// chunk costs no copy: Next returns a slice of a slab that the chunker never
// writes again. Only the few bytes left at the end of a slab (less than one
// chunk) are copied into the next.
type Chunker struct {
	r            io.Reader
	p            Params
	maskS, maskL uint64
	buf          []byte // the current slab; buf[off:] is not yet cut
	off          int
	err          error // the first read error, io.EOF at the end
}

// slabSize is the most the chunker reads at a time (and the unit of its
// allocations once a stream is large): big enough that read calls and
// end-of-slab copies are rare.
const slabSize = 4 << 20

// New returns a chunker reading r with bounds p.
func New(r io.Reader, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	maskS, maskL := masks(p.Avg)
	return &Chunker{r: r, p: p, maskS: maskS, maskL: maskL}, nil
}

// Next returns the next chunk, or io.EOF after the last one. The chunk is
// never empty. Its bytes belong to the caller from then on: the chunker
// never reuses them, so they may be kept without copying (but not grown in
// place: the slice's capacity ends where the chunk does).
func (c *Chunker) Next() ([]byte, error) {
	for len(c.buf)-c.off < c.p.Max && c.err == nil {
		c.fill()
	}
	avail := len(c.buf) - c.off
	if c.err != nil && !errors.Is(c.err, io.EOF) {
		return nil, c.err
	}
	if avail == 0 {
		return nil, io.EOF
	}
	window := c.buf[c.off : c.off+min(avail, c.p.Max)]
	n := cut(window, c.p.Min, c.p.Avg, c.maskS, c.maskL)
	chunk := window[:n:n]
	c.off += n
	return chunk, nil
}

// fill reads more of the stream, into a new slab if the current one has
// less than a maximal chunk of room left.
func (c *Chunker) fill() {
	if cap(c.buf)-len(c.buf) < c.p.Max {
		rest := c.buf[c.off:]
		// Start small (most published files are small) and double up to
		// slabSize.
		slab := make([]byte, len(rest), max(min(2*cap(c.buf), slabSize), 2*c.p.Max))
		copy(slab, rest)
		c.buf, c.off = slab, 0
	}
	for range 100 {
		n, err := c.r.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if err != nil {
			c.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	c.err = io.ErrNoProgress
}

// cut returns the length of the chunk at the start of data, which holds
// the rest of the stream or at least Max bytes (and is cut to Max). It is
// the FastCDC cut of go-cdc-chunkers' fastcdc-v1.0.0, byte for byte
// (TestSameCutsAsLibrary): a Gear rolling hash from Min, tested with the
// stricter mask before Avg and the looser one after.
func cut(data []byte, minSize, avg int, maskS, maskL uint64) int {
	n := len(data)
	if n <= minSize {
		return n
	}
	avg = min(avg, n)
	g := &fastcdc.G
	var fp uint64
	i, ok := 0, false
	if i, fp, ok = gearScan(g, data, minSize, avg, fp, maskS); ok {
		return i
	}
	if i, _, ok = gearScan(g, data, avg, n, fp, maskL); ok {
		return i
	}
	return n
}

// gearScan rolls the Gear hash fp over data[from:to] and returns the first
// i at which fp&mask == 0 after adding data[i]. It takes two bytes a step:
// fp*4 + (2g[a] + g[b]) keeps the hash's dependency chain at one shift and
// one add per two bytes, the odd byte's value being computed beside it.
func gearScan(g *[256]uint64, data []byte, from, to int, fp, mask uint64) (int, uint64, bool) {
	d := data[from:to]
	i := 0
	for ; i+1 < len(d); i += 2 {
		a, b := g[d[i]], g[d[i+1]]
		fp1 := fp*2 + a
		fp = fp*4 + (a*2 + b)
		if fp1&mask == 0 {
			return from + i, fp1, true
		}
		if fp&mask == 0 {
			return from + i + 1, fp, true
		}
	}
	if i < len(d) {
		fp = fp*2 + g[d[i]]
		if fp&mask == 0 {
			return from + i, fp, true
		}
	}
	return to, fp, false
}

// normalLevel is FastCDC's normalisation level in fastcdc-v1.0.0.
const normalLevel = 2

// masks returns fastcdc-v1.0.0's masks for an average of avg (a power of
// two): log2(avg)±normalLevel one-bits spread evenly over 64 bits.
func masks(avg int) (maskS, maskL uint64) {
	b := bits.Len(uint(avg)) - 1
	return spacedMask(b + normalLevel), spacedMask(b - normalLevel)
}

func spacedMask(ones int) uint64 {
	if ones >= 64 {
		return ^uint64(0)
	}
	var m uint64
	if ones <= 0 {
		return 0
	}
	step := 64 / ones
	for i := range ones {
		m |= 1 << (63 - i*step)
	}
	return m
}

// Split cuts data, all of it in memory, into content-defined pieces with
// bounds p (the same cut as a Chunker reading data) and calls fn with each
// piece in order: a slice of data. It is what the sub-chunk lists of delta
// sync use, with small bounds, inside one chunk.
func Split(data []byte, p Params, fn func(piece []byte)) error {
	if err := p.Validate(); err != nil {
		return err
	}
	maskS, maskL := masks(p.Avg)
	for len(data) > 0 {
		window := data[:min(len(data), p.Max)]
		n := cut(window, p.Min, p.Avg, maskS, maskL)
		fn(data[:n:n])
		data = data[n:]
	}
	return nil
}
