package chunker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers fastcdc-v1.0.0 (the reference)
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
		out = append(out, b)
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

// TestSameCutsAsLibrary checks that nii's cut loop finds exactly the cut
// points of go-cdc-chunkers' fastcdc-v1.0.0, whose name manifests record:
// random and CSV-like data, several bounds, and readers that return short
// reads.
func TestSameCutsAsLibrary(t *testing.T) {
	var csv bytes.Buffer
	r := rand.New(rand.NewPCG(3, 3))
	for csv.Len() < 6<<20 {
		fmt.Fprintf(&csv, "Greenwich,%02d/%02d/2024,%d,%d.%02d,Supplier %d Ltd\n", 1+r.IntN(28), 1+r.IntN(12), r.IntN(1e9), r.IntN(90000), r.IntN(100), r.IntN(5000))
	}
	inputs := map[string][]byte{
		"random":   randBytes(11, 9<<20+12345),
		"csv":      csv.Bytes(),
		"zeros":    make([]byte, 3<<20+7),
		"short":    randBytes(12, 70<<10),
		"tiny":     randBytes(13, 100),
		"boundary": randBytes(14, slabSize),
	}
	params := []Params{Default(), {Min: 8 << 10, Avg: 64 << 10, Max: 256 << 10}, {Min: 8 << 10, Avg: 32 << 10, Max: 128 << 10},
		{Min: 4 << 10, Avg: 32 << 10, Max: 256 << 10}, {Min: 2 << 10, Avg: 8 << 10, Max: 32 << 10}, {Min: 64 << 10, Avg: 256 << 10, Max: 1 << 20}}
	for name, data := range inputs {
		for _, p := range params {
			want := libraryCuts(t, data, p)
			for _, rd := range []struct {
				name string
				r    io.Reader
			}{{"whole", bytes.NewReader(data)}, {"half", iotest.HalfReader(bytes.NewReader(data))}, {"odd", &oddReader{data: data}}} {
				var got []int
				c, err := New(rd.r, p)
				if err != nil {
					t.Fatal(err)
				}
				for {
					b, err := c.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, len(b))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%s, %v, %s reads: %d chunks, library %d; first differ at %d", name, p, rd.name, len(got), len(want), firstDiff(got, want))
				}
			}
		}
	}
}

func libraryCuts(t *testing.T, data []byte, p Params) []int {
	t.Helper()
	c, err := chunkers.NewChunker(Algorithm, bytes.NewReader(data), &chunkers.ChunkerOpts{MinSize: p.Min, NormalSize: p.Avg, MaxSize: p.Max})
	if err != nil {
		t.Fatal(err)
	}
	var cuts []int
	for {
		b, err := c.Next()
		if len(b) > 0 {
			cuts = append(cuts, len(b))
		}
		if errors.Is(err, io.EOF) {
			return cuts
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// oddReader returns reads of varying odd sizes.
type oddReader struct {
	data []byte
	n    int
}

func (r *oddReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	r.n++
	k := min(len(p), len(r.data), 1+(r.n*7919)%300000)
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

func TestChunksAreNotReused(t *testing.T) {
	data := randBytes(21, 3*slabSize+999)
	c, _ := New(iotest.HalfReader(bytes.NewReader(data)), Default())
	var kept [][]byte
	for {
		b, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, b)
	}
	if !bytes.Equal(bytes.Join(kept, nil), data) {
		t.Fatal("chunks kept without copying were overwritten")
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{{0, 1, 2}, {2, 2, 3}, {1, 3, 3}, {1, 2, 2 << 20}, {32, 64, 256}, {1024, 3072, 8192}} {
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
