// Package chunker cuts a byte stream into content-defined chunks.
//
// It wraps the FastCDC implementation of github.com/PlakarKorp/go-cdc-chunkers
// (the spec-faithful "fastcdc-v1.0.0" variant, whose cut points are frozen by
// its version name) behind a small Next-style API, and fixes nii's chunk
// bounds. Content-defined cut points move with the content, so an edit to one
// row of a large CSV changes one or two chunks, not every chunk after it.
//
// The bounds (16 KiB min, 64 KiB average, 256 KiB max) were chosen by
// measurement; docs/storage.md gives the figures.
package chunker

import (
	"errors"
	"fmt"
	"io"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers fastcdc-v1.0.0
)

// Algorithm is the go-cdc-chunkers algorithm name. Its version is part of the
// name so that an upgraded library cannot silently move cut points.
const Algorithm = "fastcdc-v1.0.0"

// Params are a chunker's bounds in bytes.
type Params struct {
	Min, Avg, Max int
}

// Default returns nii's chunk bounds.
func Default() Params { return Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10} }

// String names the algorithm and bounds, as recorded in manifests.
func (p Params) String() string { return fmt.Sprintf("%s/%d/%d/%d", Algorithm, p.Min, p.Avg, p.Max) }

// Validate checks min < avg < max and that max fits nii's chunk limit.
func (p Params) Validate() error {
	if p.Min <= 0 || p.Min >= p.Avg || p.Avg >= p.Max || p.Max > 1<<20 {
		return fmt.Errorf("chunker bounds %d/%d/%d: want 0 < min < avg < max ≤ 1 MiB", p.Min, p.Avg, p.Max)
	}
	return nil
}

// Chunker returns successive chunks of a stream.
type Chunker struct {
	c    *chunkers.Chunker
	done bool
}

// New returns a chunker reading r with bounds p.
func New(r io.Reader, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c, err := chunkers.NewChunker(Algorithm, r, &chunkers.ChunkerOpts{MinSize: p.Min, NormalSize: p.Avg, MaxSize: p.Max})
	if err != nil {
		return nil, fmt.Errorf("chunker: %w", err)
	}
	return &Chunker{c: c}, nil
}

// Next returns the next chunk, or io.EOF after the last one. The chunk is
// never empty and aliases the chunker's buffer: it is valid only until the
// next call, so copy it to keep it.
func (c *Chunker) Next() ([]byte, error) {
	if c.done {
		return nil, io.EOF
	}
	b, err := c.c.Next()
	if errors.Is(err, io.EOF) {
		// The library returns the final chunk together with io.EOF.
		c.done = true
		if len(b) == 0 {
			return nil, io.EOF
		}
		return b, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		c.done = true
		return nil, io.EOF
	}
	return b, nil
}
