package chunker

import "testing"

func BenchmarkCut(b *testing.B) {
	data := randBytes(1, 64<<20)
	p := Default()
	s, l := masks(p.Avg)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for d := data; len(d) > 0; {
			n := cut(d[:min(len(d), p.Max)], p.Min, p.Avg, s, l)
			d = d[n:]
		}
	}
}
