package query

import (
	"bufio"
	"bytes"
	"fmt"
	"math/big"
	"testing"
	"time"
)

func sampleResult() *Result {
	return &Result{
		Columns: []Column{{Name: "s", Type: TypeString}, {Name: "n", Type: TypeInteger}, {Name: "d", Type: TypeDecimal, Scale: 2, SQLType: "DECIMAL(18,2)"},
			{Name: "x", Type: TypeAny}},
		Rows: [][]any{
			{"a", int64(-3), NewDecimal(-12345, 2), []any{1.5, true, nil, map[string]any{"k": []byte{1, 2}}}},
			{nil, uint64(1 << 63), NewDecimalBig(new(big.Int).Lsh(big.NewInt(1), 100), 4), time.Unix(1, 5).UTC()},
		},
		Truncated: true,
		Notice:    "truncated",
	}
}

func TestWireResultRoundTrip(t *testing.T) {
	r := sampleResult()
	b, err := appendResult(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(r) {
		t.Fatalf("got %v\nwant %v", got, r)
	}
	// Every truncation of a valid payload is refused, not misread.
	for i := range len(b) {
		if _, err := decodeResult(b[:i]); err == nil {
			t.Fatalf("a payload cut at %d of %d bytes decoded", i, len(b))
		}
	}
}

// FuzzWorkerFrames feeds arbitrary bytes to the daemon's side of the
// protocol, as a compromised worker could: frames, results, errors and
// hello. Nothing may panic, and a decoded result re-encodes to what
// decodes the same.
func FuzzWorkerFrames(f *testing.F) {
	var seed bytes.Buffer
	b, _ := appendResult(nil, sampleResult())
	writeFrame(&seed, msgResult, 7, b)
	writeFrame(&seed, msgError, 8, appendStr([]byte{kindRefused}, "refused"))
	writeFrame(&seed, msgLoaded, 9, []byte{2, 4})
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 3, 65, 1, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for range 64 {
			fr, _, err := readFrame(r, 1<<20, nil)
			if err != nil {
				break
			}
			if res, err := decodeResult(fr.payload); err == nil {
				b, err := appendResult(nil, res)
				if err != nil {
					t.Fatalf("a decoded result does not encode: %v", err)
				}
				again, err := decodeResult(b)
				if err != nil || fmt.Sprint(again) != fmt.Sprint(res) {
					t.Fatalf("round trip: %v %v", again, err)
				}
			}
			replyError(fr)
			decodeHello(fr.payload)
			d := &decoder{b: fr.payload}
			d.value(0)
			d.columns()
		}
	})
}
