package exchange

import (
	"bytes"
	"testing"
)

// FuzzDecodeProblemRequest feeds arbitrary bytes to the problem request
// decoder. It must not panic; what it accepts is within every bound and
// re-encodes to a request that decodes the same.
func FuzzDecodeProblemRequest(f *testing.F) {
	for _, p := range []problemRequest{
		{Dataset: spendDataset, Message: "row 3 is wrong"},
		{Dataset: spendDataset, Name: "Ada", Email: "ada@example.org", Message: "<script>x</script>", Cred: "cred"},
		{Dataset: spendDataset, Message: ""},
	} {
		var buf bytes.Buffer
		if err := writeMsg(&buf, &p); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0x05, 0xa1, 0x01, 0x61, 'x', 0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, cred, err := DecodeProblemRequest(bytes.NewReader(data))
		if err != nil {
			if p != (ProblemReport{}) || cred != "" {
				t.Fatalf("a report with an error: %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted a report that does not validate: %v", err)
		}
		if len(p.Message) == 0 || len(p.Message) > MaxProblemMessage || len(p.Name) > MaxProblemName || len(p.Email) > MaxProblemEmail {
			t.Fatalf("accepted a report out of bounds: %d/%d/%d bytes", len(p.Name), len(p.Email), len(p.Message))
		}
		var buf bytes.Buffer
		if err := writeMsg(&buf, &problemRequest{Dataset: p.Dataset, Name: p.Name, Email: p.Email, Message: p.Message, Cred: cred}); err != nil {
			t.Fatal(err)
		}
		p2, cred2, err := DecodeProblemRequest(&buf)
		if err != nil || p2 != p || cred2 != cred {
			t.Fatalf("round trip: %+v %q %v, want %+v %q", p2, cred2, err, p, cred)
		}
	})
}
