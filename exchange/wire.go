package exchange

// Wire format shared by every nii stream protocol (docs/protocol.md has the
// full description, message by message).
//
// Framing. A frame is an unsigned LEB128 varint (minimally encoded, as in
// multiformats unsigned-varint and go-msgio's delimited format) giving the
// payload length, followed by that many payload bytes. Each protocol fixes a
// maximum payload length per message; a frame that declares more is refused
// before any of its payload is read or allocated.
//
// Messages. Every payload is one canonical CBOR (RFC 8949 §4.2.1) map whose
// keys are small unsigned integers, encoded and decoded with nii.Marshal and
// nii.Unmarshal. Decoders refuse unknown keys, duplicate keys and
// indefinite-length items, so adding a field means a new protocol version.
//
// Envelope. Each stream carries one exchange: the client writes one request
// message and closes its write side; the server answers with a status
// message, then (only if the status is OK) one response message, and closes
// the stream. A status that is not OK carries a code and a message and ends
// the exchange.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/nii-uk/nii"
)

// Errors a caller of the wire protocols may branch on.
var (
	// ErrFrameTooLarge is wrapped when a frame declares a length above the
	// limit for its message.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrMalformed is wrapped when a peer sends bytes that are not a valid
	// message of the protocol: a bad varint, undecodable CBOR, a response
	// that breaks the protocol's rules.
	ErrMalformed = errors.New("malformed message")
	// ErrRemote is wrapped by every error status a remote node answers with;
	// the error's text carries the code and the remote's message.
	ErrRemote = errors.New("remote error")

	// Deprecated: use nii.ErrRefused (status code "refused").
	ErrRefused = nii.ErrRefused
	// Deprecated: use nii.ErrUnavailable (status code "unavailable").
	ErrUnavailable = nii.ErrUnavailable
)

// Status codes carried by a status message that is not OK. A client must
// accept codes it does not know and treat them like codeInternal.
const (
	codeNotFound    = "not_found"   // the thing asked for does not exist here: nii.ErrNotFound
	codeRefused     = "refused"     // not allowed (no grant, not a member): nii.ErrRefused
	codeBadRequest  = "bad_request" // the request was malformed or out of range: nii.ErrInvalid
	codeUnavailable = "unavailable" // try later: shutting down, over resource limits: nii.ErrUnavailable
	codeInternal    = "internal"    // the server failed; details are in its log, not on the wire
)

// wireCodes is the one table between error kinds and status codes, used
// both ways: a server answers an error of a kind listed here with its code
// (and its text); a client's error for that code is of that kind. Kinds not
// listed (exists, ambiguous, corrupt, ...) are server-side matters and go
// out as codeInternal, their details kept in the server's log. The order is
// nii.Kinds': an error of two kinds is sent as the first.
var wireCodes = []struct {
	kind error
	code string
}{
	{nii.ErrInvalid, codeBadRequest},
	{nii.ErrRefused, codeRefused},
	{nii.ErrUnavailable, codeUnavailable},
	{nii.ErrNotFound, codeNotFound},
}

// wireKind returns the kind a status code stands for, or nil.
func wireKind(code string) error {
	for _, c := range wireCodes {
		if c.code == code {
			return c.kind
		}
	}
	return nil
}

// Limits on the envelope itself.
const (
	// maxStatusSize bounds a status message (a short code and message).
	maxStatusSize = 4 << 10
	// maxStatusMessage bounds the human-readable message a server sends;
	// longer messages are cut.
	maxStatusMessage = 1 << 10
)

// status is the first message of every response.
type status struct {
	OK      bool   `cbor:"1,keyasint"`
	Code    string `cbor:"2,keyasint,omitempty"`
	Message string `cbor:"3,keyasint,omitempty"`
}

// wireError is an error status as sent or received: Code is one of the code
// constants (or a code this version does not know), Message is for people.
// It is the error a client gets when the remote answers with an error status;
// errors.Is matches ErrRemote, and the kind wireCodes gives the code.
type wireError struct {
	Code    string
	Message string
}

func (e *wireError) Error() string {
	if e.Message == "" {
		return "remote: " + e.Code
	}
	return "remote: " + e.Code + ": " + e.Message
}

// Is lets errors.Is match ErrRemote for every error status and the kind
// that corresponds to the code.
func (e *wireError) Is(target error) bool {
	if target == ErrRemote {
		return true
	}
	k := wireKind(e.Code)
	return k != nil && k == target
}

// RefusalReason returns the reason code of a refusal, for nii.ReasonOf. A
// refusal's message starts with the refusing check's reason in parentheses
// when package auth made it: "refused (no_grant): ...".
func (e *wireError) RefusalReason() string {
	if e.Code != codeRefused {
		return ""
	}
	rest, ok := strings.CutPrefix(e.Message, "refused (")
	if !ok {
		return ""
	}
	reason, _, ok := strings.Cut(rest, ")")
	if !ok || reason == "" || strings.IndexFunc(reason, func(r rune) bool { return (r < 'a' || r > 'z') && r != '_' }) >= 0 {
		return ""
	}
	return reason
}

// badRequest returns a wireError with code bad_request.
func badRequest(format string, a ...any) *wireError {
	return &wireError{Code: codeBadRequest, Message: fmt.Sprintf(format, a...)}
}

// toWireError turns an error a handler or a source returned into the status
// a client sees. Errors that are not wireErrors and are of no kind in
// wireCodes become "internal" with a generic message: server-side details
// (paths, database errors) stay in the server's log.
func toWireError(err error) *wireError {
	var we *wireError
	if errors.As(err, &we) {
		return we
	}
	for _, c := range wireCodes {
		if errors.Is(err, c.kind) {
			return &wireError{Code: c.code, Message: err.Error()}
		}
	}
	return internalError()
}

// internalError is the status for a failure the client cannot help.
func internalError() *wireError { return &wireError{Code: codeInternal, Message: "internal error"} }

// writeFrame writes payload as one frame: its length as an unsigned varint,
// then the bytes.
func writeFrame(w io.Writer, payload []byte) error {
	var hdr [maxVarintLen]byte
	n := putUvarint(hdr[:], uint64(len(payload)))
	if len(payload) <= smallFrame {
		// One write: one muxer frame, one syscall.
		buf := make([]byte, 0, n+len(payload))
		_, err := w.Write(append(append(buf, hdr[:n]...), payload...))
		return err
	}
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// smallFrame is the payload size up to which writeFrame copies header and
// payload into one buffer rather than writing twice.
const smallFrame = 16 << 10

const maxVarintLen = 10

func putUvarint(b []byte, x uint64) int {
	i := 0
	for x >= 0x80 {
		b[i] = byte(x) | 0x80
		x >>= 7
		i++
	}
	b[i] = byte(x)
	return i + 1
}

// readFrame reads one frame of at most max payload bytes. It returns io.EOF
// if r ends before the first byte of the frame, io.ErrUnexpectedEOF if it
// ends inside one, and an error wrapping ErrFrameTooLarge, without reading
// further, if the frame declares more than max bytes.
//
// If r is an io.ByteReader (a *bufio.Reader, a *bytes.Reader) the header is
// read through it; otherwise one byte at a time, so that nothing past the
// frame is consumed from r. Callers reading several frames from a stream
// should wrap it once in a bufio.Reader.
func readFrame(r io.Reader, max int) ([]byte, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = &oneByteReader{r: r}
	}
	n, err := readUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrFrameTooLarge, n, max)
	}
	return readPayload(r, int(n))
}

// readPayload reads exactly n bytes. The buffer grows (doubling from 64 KiB)
// as bytes arrive rather than being sized from the header up front, so a peer
// that declares a large frame and sends little of it costs little memory.
func readPayload(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, min(n, 64<<10))
	got := 0
	for {
		m, err := io.ReadFull(r, buf[got:])
		got += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if got == n {
			return buf, nil
		}
		grown := make([]byte, min(n, 2*len(buf)))
		copy(grown, buf)
		buf = grown
	}
}

// readUvarint reads a minimally encoded unsigned LEB128 varint of at most 64
// bits (binary.ReadUvarint's format, with the minimality that
// multiformats/go-varint also insists on).
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < maxVarintLen; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if b < 0x80 {
			if i == maxVarintLen-1 && b > 1 {
				return 0, fmt.Errorf("%w: frame length overflows 64 bits", ErrMalformed)
			}
			if b == 0 && i > 0 {
				return 0, fmt.Errorf("%w: frame length not minimally encoded", ErrMalformed)
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, fmt.Errorf("%w: frame length overflows 64 bits", ErrMalformed)
}

// oneByteReader adapts an io.Reader to io.ByteReader without reading ahead.
type oneByteReader struct {
	r io.Reader
	b [1]byte
}

func (o *oneByteReader) ReadByte() (byte, error) {
	if _, err := io.ReadFull(o.r, o.b[:]); err != nil {
		return 0, err
	}
	return o.b[0], nil
}

// writeMsg encodes v as canonical CBOR and writes it as one frame.
func writeMsg(w io.Writer, v any) error {
	b, err := nii.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	return writeFrame(w, b)
}

// readMsg reads one frame of at most max bytes and decodes it into v.
func readMsg(r io.Reader, max int, v any) error {
	b, err := readFrame(r, max)
	if err != nil {
		return err
	}
	if err := nii.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// writeOK writes an OK status followed by the response message v.
func writeOK(w io.Writer, v any) error {
	// Encode first, so an encoding failure can still become an error status.
	b, err := nii.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	if err := writeMsg(w, &status{OK: true}); err != nil {
		return err
	}
	return writeFrame(w, b)
}

// answeredError wraps an error a handler has already reported to the client
// in an error status: the exchange ended in good order, so the stream is
// closed rather than reset.
type answeredError struct {
	code string
	err  error
}

func (e *answeredError) Error() string { return e.err.Error() }
func (e *answeredError) Unwrap() error { return e.err }

// answer sends we as the error status and returns cause wrapped in an
// answeredError, or, if the status could not be sent, the write error.
func answer(w io.Writer, we *wireError, cause error) error {
	if err := writeError(w, we); err != nil {
		return fmt.Errorf("send error status %s: %w (after: %v)", we.Code, err, cause)
	}
	return &answeredError{code: we.Code, err: cause}
}

// writeError writes an error status.
func writeError(w io.Writer, e *wireError) error {
	code := e.Code
	if code == "" {
		code = codeInternal
	}
	return writeMsg(w, &status{Code: clip(code, 64), Message: clip(e.Message, maxStatusMessage)})
}

// clip cuts s to at most n bytes of valid UTF-8 (CBOR text must be UTF-8).
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// readResponse reads a status and, if it is OK, the response message (at
// most max bytes) into v. An error status comes back as a *wireError.
func readResponse(r io.Reader, max int, v any) error {
	if err := readStatus(r); err != nil {
		return err
	}
	if err := readMsg(r, max, v); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read response: %w", err)
	}
	return nil
}

// readStatus reads a status: nil if it is OK, a *wireError if it is an
// error status.
func readStatus(r io.Reader) error {
	var st status
	if err := readMsg(r, maxStatusSize, &st); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: stream closed before the response", io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("read status: %w", err)
	}
	if !st.OK {
		if st.Code == "" {
			return fmt.Errorf("%w: error status without a code", ErrMalformed)
		}
		return &wireError{Code: st.Code, Message: st.Message}
	}
	if st.Code != "" || st.Message != "" {
		return fmt.Errorf("%w: OK status with code %q", ErrMalformed, st.Code)
	}
	return nil
}

// newReader returns r buffered for reading several frames, unless it already is.
func newReader(r io.Reader) io.Reader {
	if _, ok := r.(io.ByteReader); ok {
		return r
	}
	return bufio.NewReaderSize(r, 4<<10)
}
