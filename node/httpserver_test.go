package node_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// serverNode starts a lone node with the API limits given.
func serverNode(t *testing.T, set func(*node.HTTPConfig)) *node.Node {
	t.Helper()
	cfg := nodetest.Config(t.TempDir(), "greenwich", nodetest.Options{})
	set(&cfg.HTTP)
	return nodetest.Start(t, cfg)
}

func apiConn(t *testing.T, n *node.Node) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(n.APIAddr(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads from c until the server closes it, failing the test if
// that has not happened within bound (a generous multiple of the timeout
// under test: a busy machine delays, it does not fail).
func waitClosed(t *testing.T, c net.Conn, bound time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(bound))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection was still open after %v", what, bound)
	}
}

// A client that sends its headers and then trickles nothing of the body it
// promised is dropped at read_timeout, and so is a keep-alive connection
// left idle past idle_timeout.
func TestSlowAndIdleConnectionsDropped(t *testing.T) {
	n := serverNode(t, func(h *node.HTTPConfig) { h.ReadTimeout, h.IdleTimeout = "300ms", "300ms" })
	bound := 20 * time.Second

	slow := apiConn(t, n)
	fmt.Fprintf(slow, "POST /api/v1/grants/inspect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"token\":")
	waitClosed(t, slow, bound, "a body that never arrives")

	idle := apiConn(t, n)
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	waitClosed(t, idle, bound, "an idle keep-alive connection")
}

// Past max_conns a connection is answered 503 at once; once one closes,
// the next is served.
func TestConnectionCap(t *testing.T) {
	const max = 4
	n := serverNode(t, func(h *node.HTTPConfig) { h.MaxConns = max })
	held := make([]net.Conn, max)
	for i := range held {
		held[i] = apiConn(t, n)
	}
	nodetest.WaitFor(t, 20*time.Second, "the API holds the connections", func() bool { return n.APIConnsForTest() == max })
	over := apiConn(t, n)
	fmt.Fprintf(over, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("the connection over the cap: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "too many connections") {
		t.Fatalf("the connection over the cap: %d %s", resp.StatusCode, body)
	}
	held[0].Close()
	nodetest.WaitFor(t, 20*time.Second, "the API lets a connection go", func() bool { return n.APIConnsForTest() == max-1 })
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	r2, err := cl.Get(n.APIAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK {
		t.Fatalf("below the cap again: %d", r2.StatusCode)
	}
	// The refusal is counted.
	held[1].Close()
	nodetest.WaitFor(t, 20*time.Second, "the API lets another go", func() bool { return n.APIConnsForTest() <= max-1 })
	r3, err := cl.Get(n.APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(r3.Body)
	r3.Body.Close()
	if !strings.Contains(string(m), "nii_http_connections_refused_total 1") {
		t.Fatalf("metrics lack the refusal:\n%s", grepLines(string(m), "nii_http_conn"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A download whose client stops reading is dropped at stall_timeout.
func TestStalledDownloadDropped(t *testing.T) {
	n := serverNode(t, func(h *node.HTTPConfig) { h.WriteTimeout, h.StallTimeout = "300ms", "300ms" })
	ref := publishData(t, n, "big", randBytes(3, 32<<20), "open")
	c := apiConn(t, n)
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(c, "GET /api/v1/datasets/%s/versions/%d/content HTTP/1.1\r\nHost: x\r\n\r\n", ref.Dataset, ref.Version)
	// Read the headers, then stop reading: the server's writes block until
	// the stall deadline passes and it closes the connection.
	if _, err := http.ReadResponse(bufio.NewReaderSize(c, 4<<10), nil); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 30*time.Second, "the server drops a download nobody reads", func() bool { return n.APIConnsForTest() == 0 })
}

// A download that keeps moving is not cut off by write_timeout, however
// long it takes: streams have a progress deadline instead.
func TestSteadyDownloadOutlastsWriteTimeout(t *testing.T) {
	n := serverNode(t, func(h *node.HTTPConfig) { h.WriteTimeout, h.StallTimeout = "200ms", "20s" })
	data := randBytes(4, 8<<20)
	ref := publishData(t, n, "big", data, "open")
	resp, err := http.Get(fmt.Sprintf("%s/api/v1/datasets/%s/versions/%d/content", n.APIAddr(), ref.Dataset, ref.Version))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []byte
	buf := make([]byte, 512<<10)
	start := time.Now()
	for {
		k, err := io.ReadFull(resp.Body, buf)
		got = append(got, buf[:k]...)
		if err != nil {
			break
		}
		time.Sleep(25 * time.Millisecond) // a slow reader: 16 pauses outlast the write timeout
	}
	if len(got) != len(data) || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("a steady download got %d of %d bytes in %v", len(got), len(data), time.Since(start))
	}
}
