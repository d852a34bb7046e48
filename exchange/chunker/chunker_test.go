package chunker

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func chunkAll(t testing.TB, data []byte, p Params) [][]byte {
	t.Helper()
	c, err := New(bytes.NewReader(data), p)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		b, err := c.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(b))
	}
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestChunksReassembleAndRespectBounds(t *testing.T) {
	p := Default()
	for _, n := range []int{0, 1, p.Min - 1, p.Min, p.Min + 1, p.Max - 1, p.Max, p.Max + 1, 3*p.Max + 7, 5 << 20} {
		data := randBytes(uint64(n), n)
		chunks := chunkAll(t, data, p)
		if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
			t.Fatalf("n=%d: chunks do not reassemble to the input", n)
		}
		for i, c := range chunks {
			if len(c) == 0 || len(c) > p.Max {
				t.Fatalf("n=%d: chunk %d has size %d outside (0, %d]", n, i, len(c), p.Max)
			}
			if i < len(chunks)-1 && len(c) < p.Min {
				t.Fatalf("n=%d: non-final chunk %d has size %d below min %d", n, i, len(c), p.Min)
			}
		}
		if n == 0 && len(chunks) != 0 {
			t.Fatalf("empty input gave %d chunks", len(chunks))
		}
	}
}

func TestEditMovesFewChunks(t *testing.T) {
	p := Default()
	data := randBytes(7, 8<<20)
	edited := bytes.Clone(data)
	// Insert 40 bytes in the middle: only the chunks around the edit change.
	mid := len(edited) / 2
	edited = append(edited[:mid], append(bytes.Repeat([]byte("x"), 40), edited[mid:]...)...)
	before := map[string]bool{}
	for _, c := range chunkAll(t, data, p) {
		before[string(c)] = true
	}
	changed := 0
	after := chunkAll(t, edited, p)
	for _, c := range after {
		if !before[string(c)] {
			changed++
		}
	}
	if changed == 0 || changed > 3 {
		t.Fatalf("an insertion changed %d of %d chunks, want 1 to 3", changed, len(after))
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{{0, 1, 2}, {2, 2, 3}, {1, 3, 3}, {1, 2, 2 << 20}} {
		if p.Validate() == nil {
			t.Errorf("%v: want an error", p)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkChunker(b *testing.B) {
	data := randBytes(1, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c, _ := New(bytes.NewReader(data), Default())
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	}
}
