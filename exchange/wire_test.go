package exchange

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/nii-uk/nii"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 127, 128, 16383, 16384, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			payload := bytes.Repeat([]byte{0xa5, 0x5a, 0x01}, size/3+1)[:size]
			var buf bytes.Buffer
			if err := writeFrame(&buf, payload); err != nil {
				t.Fatal(err)
			}
			hdr := binary.AppendUvarint(nil, uint64(size))
			if buf.Len() != len(hdr)+size || !bytes.HasPrefix(buf.Bytes(), hdr) {
				t.Fatalf("frame of %d bytes: header %x, want %x, total %d", size, buf.Bytes()[:min(buf.Len(), 4)], hdr, buf.Len())
			}
			// Three kinds of reader: a byte reader, a plain reader that
			// returns one byte per Read, and a bufio.Reader.
			readers := map[string]io.Reader{
				"bytes":   bytes.NewReader(buf.Bytes()),
				"onebyte": iotest.OneByteReader(bytes.NewReader(buf.Bytes())),
				"bufio":   bufio.NewReader(bytes.NewReader(buf.Bytes())),
			}
			for name, r := range readers {
				got, err := readFrame(r, size)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !bytes.Equal(got, payload) {
					t.Fatalf("%s: payload differs", name)
				}
				if _, err := readFrame(r, size); err != io.EOF {
					t.Fatalf("%s: after the frame: %v, want io.EOF", name, err)
				}
			}
		})
	}
}

// A plain reader must not be read past the frame: the next frame is still
// there for the next call.
func TestFrameNoReadAhead(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range []string{"first", "", "third"} {
		if err := writeFrame(&buf, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	r := struct{ io.Reader }{&buf} // hide ByteReader
	for _, want := range []string{"first", "", "third"} {
		got, err := readFrame(r, 100)
		if err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
}

// allocatedBytes returns how many bytes of heap f allocates (roughly: other
// goroutines' allocations count too).
func allocatedBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestFrameTooLarge(t *testing.T) {
	// A header claiming 1 GiB, followed by a little data.
	hdr := binary.AppendUvarint(nil, 1<<30)
	input := append(append([]byte{}, hdr...), bytes.Repeat([]byte{'x'}, 4096)...)
	cr := &countingReader{r: bytes.NewReader(input)}
	got, err := readFrame(cr, 1<<20)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if got != nil {
		t.Fatal("payload returned with the error")
	}
	if cr.n != len(hdr) {
		t.Fatalf("read %d bytes, want only the %d-byte header", cr.n, len(hdr))
	}
	// The error and the one-byte reader wrapper allocate a little; a
	// payload buffer would be 1 GiB (or the 1 MiB limit).
	if n := allocatedBytes(func() { _, _ = readFrame(&countingReader{r: bytes.NewReader(input)}, 1<<20) }); n > 64<<10 {
		t.Fatalf("refusing an oversized frame allocated %d bytes", n)
	}

	// Exactly at the limit is fine.
	var buf bytes.Buffer
	if err := writeFrame(&buf, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := readFrame(bytes.NewReader(buf.Bytes()), 100); err != nil {
		t.Fatalf("frame at the limit: %v", err)
	}
	if _, err := readFrame(bytes.NewReader(buf.Bytes()), 99); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("frame one over the limit: %v", err)
	}
}

func TestFrameTruncated(t *testing.T) {
	full := binary.AppendUvarint(nil, 300) // two-byte header
	full = append(full, bytes.Repeat([]byte{7}, 300)...)
	for _, tc := range []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty", nil, io.EOF},
		{"half a header", full[:1], io.ErrUnexpectedEOF},
		{"header only", full[:2], io.ErrUnexpectedEOF},
		{"part of the payload", full[:100], io.ErrUnexpectedEOF},
		{"all but one byte", full[:len(full)-1], io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []io.Reader{bytes.NewReader(tc.input), iotest.OneByteReader(bytes.NewReader(tc.input))} {
				if _, err := readFrame(r, 1000); err != tc.want {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			}
		})
	}
}

func TestFrameBadHeader(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input []byte
	}{
		{"not minimal", []byte{0x80, 0x00}},
		{"not minimal 2", []byte{0x81, 0x80, 0x00}},
		{"overflow", bytes.Repeat([]byte{0xff}, 11)},
		{"overflow in the tenth byte", append(bytes.Repeat([]byte{0xff}, 9), 0x02)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := readFrame(bytes.NewReader(tc.input), 1<<20); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	// The largest 64-bit length decodes, and is too large.
	max := binary.AppendUvarint(nil, 1<<64-1)
	if _, err := readFrame(bytes.NewReader(max), 1<<20); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("2^64-1: %v, want ErrFrameTooLarge", err)
	}
}

func TestMsgRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := catalogRequest{Origin: "12D3KooWabc", After: 1 << 40, Limit: 77}
	if err := writeMsg(&buf, &in); err != nil {
		t.Fatal(err)
	}
	// The payload is canonical CBOR: integer keys in order.
	b, _ := nii.Marshal(&in)
	if !bytes.Equal(buf.Bytes()[1:], b) || b[0] != 0xa3 || b[1] != 0x01 {
		t.Fatalf("payload %x", buf.Bytes())
	}
	var out catalogRequest
	if err := readMsg(&buf, 100, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v, want %+v", out, in)
	}
}

func TestReadMsgGarbage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"not cbor", []byte("hello, world")},
		{"truncated map", []byte{0xa3, 0x01}},
		{"wrong type", []byte{0x83, 0x01, 0x02, 0x03}},          // array, not map
		{"unknown key", []byte{0xa1, 0x18, 0x63, 0x01}},         // {99: 1}
		{"duplicate key", []byte{0xa2, 0x02, 0x01, 0x02, 0x02}}, // {2: 1, 2: 2}
		{"indefinite length", []byte{0xbf, 0x02, 0x01, 0xff}},
		{"trailing bytes", []byte{0xa1, 0x02, 0x01, 0x00}},
		{"wrong field type", []byte{0xa1, 0x02, 0x61, 0x78}}, // {2: "x"}
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeFrame(&buf, tc.payload); err != nil {
				t.Fatal(err)
			}
			var req catalogRequest
			if err := readMsg(&buf, 100, &req); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestWireErrorPropagation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		code     string
		msg      string
		sentinel error
	}{
		{"not found", fmt.Errorf("origin x: %w", ErrNotFound), codeNotFound, "origin x: not found", ErrNotFound},
		{"refused", fmt.Errorf("no grant: %w", ErrRefused), codeRefused, "no grant: refused", ErrRefused},
		{"unavailable", fmt.Errorf("shutting down: %w", ErrUnavailable), codeUnavailable, "shutting down: unavailable", ErrUnavailable},
		{"bad request", badRequest("limit %d", -1), codeBadRequest, "limit -1", nil},
		{"internal hides details", errors.New("open /var/lib/nii/db: permission denied"), codeInternal, "internal error", nil},
		{"wrapped wire error", fmt.Errorf("ctx: %w", &wireError{Code: "teapot", Message: "short and stout"}), "teapot", "short and stout", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := answer(&buf, toWireError(tc.err), tc.err)
			var ans *answeredError
			if !errors.As(err, &ans) || ans.code != tc.code || !errors.Is(err, tc.err) {
				t.Fatalf("answer returned %v", err)
			}
			var page catalogPage
			err = readResponse(&buf, 1000, &page)
			var we *wireError
			if !errors.As(err, &we) {
				t.Fatalf("got %v, want a *wireError", err)
			}
			if we.Code != tc.code || we.Message != tc.msg {
				t.Fatalf("got %q %q, want %q %q", we.Code, we.Message, tc.code, tc.msg)
			}
			if !errors.Is(err, ErrRemote) {
				t.Fatal("not ErrRemote")
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("%v is not %v", err, tc.sentinel)
			}
			for _, other := range []error{ErrNotFound, ErrRefused, ErrUnavailable} {
				if other != tc.sentinel && errors.Is(err, other) {
					t.Fatalf("%v is also %v", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("message %q does not name the code", err)
			}
		})
	}
}

func TestStatusChecks(t *testing.T) {
	long := strings.Repeat("é", 1000) // 2000 bytes
	var buf bytes.Buffer
	if err := writeError(&buf, &wireError{Code: codeInternal, Message: long + "\xff"}); err != nil {
		t.Fatal(err)
	}
	var page catalogPage
	var we *wireError
	if err := readResponse(&buf, 1000, &page); !errors.As(err, &we) || len(we.Message) > maxStatusMessage || !strings.HasPrefix(long, we.Message) {
		t.Fatalf("long message: %v", err)
	}

	for _, tc := range []struct {
		name string
		st   status
	}{
		{"error without code", status{Message: "oops"}},
		{"ok with code", status{OK: true, Code: codeInternal}},
	} {
		buf.Reset()
		if err := writeMsg(&buf, &tc.st); err != nil {
			t.Fatal(err)
		}
		if err := readResponse(&buf, 1000, &page); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: %v, want ErrMalformed", tc.name, err)
		}
	}

	// OK status then nothing: truncated, not a clean EOF.
	buf.Reset()
	if err := writeMsg(&buf, &status{OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := readResponse(&buf, 1000, &page); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("missing body: %v", err)
	}
	// Nothing at all.
	if err := readResponse(&buf, 1000, &page); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("missing status: %v", err)
	}
}

// Frames cross a real synchronous pipe in both directions.
func TestFramesOverPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	payload := bytes.Repeat([]byte("nii"), 100000)
	errc := make(chan error, 1)
	go func() {
		p, err := readFrame(b, len(payload))
		if err == nil {
			err = writeFrame(b, p)
		}
		errc <- err
	}()
	if err := writeFrame(a, payload); err != nil {
		t.Fatal(err)
	}
	got, err := readFrame(newReader(a), len(payload))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
