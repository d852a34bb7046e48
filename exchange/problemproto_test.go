package exchange

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// problemInbox is a ProblemSink that keeps what it is given.
type problemInbox struct {
	mu   sync.Mutex
	got  []ProblemReport
	from []nii.NodeID
	err  error
}

func (b *problemInbox) ReceiveProblem(from nii.NodeID, p ProblemReport) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return "", b.err
	}
	b.got = append(b.got, p)
	b.from = append(b.from, from)
	return "p-" + strings.Repeat("1", len(b.got)), nil
}

var spendDataset = nii.DatasetID{Org: "greenwich", Name: "spend"}

// pipeProblem runs one problem exchange over net.Pipe.
func pipeProblem(sink ProblemSink, allow func(nii.NodeID) bool, p ProblemReport) (string, error, error) {
	c, s := net.Pipe()
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		defer s.Close()
		errc <- serveProblem(s, "12D3KooWrelay", sink, nil, allow)
	}()
	id, err := sendProblem(c, p, "")
	c.Close()
	return id, err, <-errc
}

func allowAll(nii.NodeID) bool { return true }

func TestProblemProtocolPipe(t *testing.T) {
	in := &problemInbox{}
	p := ProblemReport{Dataset: spendDataset, Name: "Ada", Email: "ada@example.org", Message: "Row 3's amount is negative."}
	id, err, serr := pipeProblem(in, allowAll, p)
	if err != nil || serr != nil || id != "p-1" {
		t.Fatalf("id %q, client %v, server %v", id, err, serr)
	}
	if len(in.got) != 1 || in.got[0] != p || in.from[0] != "12D3KooWrelay" {
		t.Fatalf("recorded %+v from %v", in.got, in.from)
	}

	// A sink's refusal reaches the client with its kind and words.
	in.err = nii.Errorf(nii.ErrNotFound, "greenwich/spend is not published by this node")
	_, err, _ = pipeProblem(in, allowAll, p)
	if !errors.Is(err, ErrRemote) || !errors.Is(err, nii.ErrNotFound) || !strings.Contains(err.Error(), "not published by this node") {
		t.Fatalf("sink refusal: %v", err)
	}
	in.err = nil

	// Over the peer's rate limit: unavailable, nothing recorded.
	_, err, _ = pipeProblem(in, func(nii.NodeID) bool { return false }, p)
	if !errors.Is(err, nii.ErrUnavailable) || len(in.got) != 1 {
		t.Fatalf("over the limit: %v, %d recorded", err, len(in.got))
	}
}

// A server refuses a request that breaks a bound, whatever the client
// checked, and records nothing.
func TestProblemProtocolBounds(t *testing.T) {
	in := &problemInbox{}
	for name, p := range map[string]ProblemReport{
		"empty message":  {Dataset: spendDataset, Message: "  "},
		"long message":   {Dataset: spendDataset, Message: strings.Repeat("x", MaxProblemMessage+1)},
		"long name":      {Dataset: spendDataset, Name: strings.Repeat("n", MaxProblemName+1), Message: "m"},
		"two-line email": {Dataset: spendDataset, Email: "a@b\nBcc: c@d", Message: "m"},
		"not utf-8":      {Dataset: spendDataset, Message: "\xff\xfe"},
		"bad dataset":    {Dataset: nii.DatasetID{Org: "Greenwich!", Name: "x"}, Message: "m"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := p.Validate(); !errors.Is(err, nii.ErrInvalid) {
				t.Fatalf("Validate: %v, want ErrInvalid", err)
			}
			c, s := net.Pipe()
			defer c.Close()
			errc := make(chan error, 1)
			go func() { defer s.Close(); errc <- serveProblem(s, "12D3KooWrelay", in, nil, allowAll) }()
			// Written raw, past the client's own check.
			if err := writeMsg(c, &problemRequest{Dataset: p.Dataset, Name: p.Name, Email: p.Email, Message: p.Message}); err != nil {
				t.Fatal(err)
			}
			err := readStatus(newReader(c))
			c.Close()
			<-errc
			if !errors.Is(err, nii.ErrInvalid) {
				t.Fatalf("server answered %v, want bad_request", err)
			}
			if len(in.got) != 0 {
				t.Fatalf("recorded %+v", in.got)
			}
		})
	}
	// A frame over the request limit is refused before it is read.
	var buf bytes.Buffer
	writeFrame(&buf, make([]byte, maxProblemRequest+1))
	if _, _, err := DecodeProblemRequest(&buf); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversize frame: %v", err)
	}
}

func TestPeerLimiter(t *testing.T) {
	var l peerLimiter
	n := 0
	for l.allow("12D3KooWa") {
		n++
		if n > ProblemPeerBurst {
			break
		}
	}
	if n != ProblemPeerBurst {
		t.Fatalf("a peer got %d reports at once, want %d", n, ProblemPeerBurst)
	}
	if !l.allow("12D3KooWb") {
		t.Fatal("another peer shares the first one's bucket")
	}
}

// Over libp2p: the publisher records the report with the relaying node's
// authenticated ID; a publisher that is offline is ErrUnreachable.
func TestHostProblem(t *testing.T) {
	pub := newTestHost(t, nil, loopTCP)
	relay := newTestHost(t, nil, loopTCP)
	in := &problemInbox{}
	pub.ServeProblems(in)
	relay.AddPeerAddrs(pub.ID(), pub.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := ProblemReport{Dataset: spendDataset, Message: "<script>alert(1)</script>"}
	id, err := relay.SendProblem(ctx, pub.ID(), p)
	if err != nil || id == "" {
		t.Fatalf("send: %q, %v", id, err)
	}
	if len(in.got) != 1 || in.from[0] != relay.ID() || in.got[0].Message != p.Message {
		t.Fatalf("recorded %+v from %v, want from %s", in.got, in.from, relay.ID())
	}
	pub.Close()
	if _, err := relay.SendProblem(ctx, pub.ID(), p); !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrNotSupported) {
		t.Fatalf("to a closed publisher: %v, want ErrUnreachable", err)
	}
}
