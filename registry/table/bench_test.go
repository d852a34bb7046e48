package table

import (
	"testing"
)

// BenchmarkTableProfiler profiles about 64 MiB of generated council-style
// CSV (every seventh row with quoted fields, one spanning two lines),
// written in 64 KiB pieces as io.Copy would:
//
//   - profile: the whole thing, sample parsing and type inference included;
//   - scan: the counting scanner alone, which does all the work after the
//     sample, over the same data;
//   - scan-plain: the counting scanner over data with no quotes at all.
func BenchmarkTableProfiler(b *testing.B) {
	quoted, _ := bigCSV(64<<20, false)
	plain := plainCSV(64 << 20)
	const piece = 64 << 10
	b.Run("profile", func(b *testing.B) {
		b.SetBytes(int64(len(quoted)))
		for b.Loop() {
			p := NewProfiler()
			for d := quoted; len(d) > 0; d = d[min(piece, len(d)):] {
				p.Write(d[:min(piece, len(d))])
			}
			if _, err := p.Result(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, bench := range []struct {
		name string
		data []byte
	}{{"scan", quoted}, {"scan-plain", plain}} {
		b.Run(bench.name, func(b *testing.B) {
			b.SetBytes(int64(len(bench.data)))
			for b.Loop() {
				s := csvScanner{delim: ','}
				for d := bench.data; len(d) > 0; d = d[min(piece, len(d)):] {
					s.scan(d[:min(piece, len(d))])
				}
				s.finish()
				if s.rows == 0 {
					b.Fatal("no rows")
				}
			}
		})
	}
}

// plainCSV generates about size bytes of CSV without quotes.
func plainCSV(size int) []byte {
	b := make([]byte, 0, size+256)
	b = append(b, "Body,Body name,Date,Transaction number,Amount,Supplier Name,Expense Type\n"...)
	for i := 0; len(b) < size; i++ {
		b = append(b, "http://statistics.data.gov.uk/id/local-authority/00BU,Trafford,03/09/2014,"...)
		b = appendInt(b, 1901095785+i)
		b = append(b, ',')
		b = appendInt(b, i%5000)
		b = append(b, ".50,ADOLESCENT RESOURCE CENTRE,CLIENTS PERS NEEDS\n"...)
	}
	return b
}

func appendInt(b []byte, n int) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}
