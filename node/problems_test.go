package node_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

// A report made on a node that does not publish the dataset reaches the
// publisher over the problem protocol and is recorded there alone, with
// the relaying node named; the publisher's officer closes it (audited);
// with the publisher gone, the report is refused as not delivered and
// nothing is kept anywhere.
func TestProblemReportRelayedToPublisher(t *testing.T) {
	f := nodetest.NewFederation(t, 2, nodetest.Options{})
	pub, relay := f.Nodes[0], f.Nodes[1]
	rec := f.PublishAndWaitListed(0, "spend", []byte("a,b\n1,2\n"), nii.Metadata{Title: "Spend", Access: nii.AccessOpen})
	d := rec.Ref.Dataset
	ctx := context.Background()

	msg := `<script>alert(1)</script> the June totals are doubled`
	got, err := relay.ReportProblem(ctx, d, api.ProblemSubmission{Name: " A Resident ", Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Relayed || got.Publisher != pub.ID() || got.ID == "" {
		t.Fatalf("receipt %+v; want relayed to %s", got, pub.ID())
	}
	held, err := pub.Problems(node.ProblemQuery{Dataset: d.String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 1 || held[0].ID != got.ID || held[0].Message != msg || held[0].Name != "A Resident" ||
		held[0].Via != relay.ID() || held[0].State != api.ProblemOpen {
		t.Fatalf("publisher holds %+v; want the one report, via %s, open", held, relay.ID())
	}
	if kept, err := relay.Problems(node.ProblemQuery{}); err != nil || len(kept) != 0 {
		t.Fatalf("the relaying node keeps %v (%v); want nothing", kept, err)
	}

	closed, err := pub.CloseProblem(got.ID)
	if err != nil || closed.State != api.ProblemClosed {
		t.Fatalf("close: %+v %v", closed, err)
	}
	if open, _ := pub.Problems(node.ProblemQuery{State: api.ProblemOpen}); len(open) != 0 {
		t.Fatalf("open reports after close: %+v", open)
	}
	recs, _, err := pub.Audit(auth.AuditQuery{Dataset: d.String(), Newest: true})
	if err != nil {
		t.Fatal(err)
	}
	audited := false
	for _, r := range recs {
		audited = audited || (r.Action == "close-problem" && strings.Contains(r.Detail, got.ID))
	}
	if !audited {
		t.Fatalf("no audit record of the close among %+v", recs)
	}

	// Bad reports are refused before anything is sent.
	for _, bad := range []api.ProblemSubmission{{Message: "  "}, {Message: strings.Repeat("x", 8001)}} {
		if _, err := relay.ReportProblem(ctx, d, bad); !errors.Is(err, nii.ErrInvalid) {
			t.Errorf("report of %d bytes: %v; want invalid", len(bad.Message), err)
		}
	}

	// The publisher gone: not delivered, said plainly, nothing kept.
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = relay.ReportProblem(ctx, d, api.ProblemSubmission{Message: "still wrong"})
	if !errors.Is(err, nii.ErrUnavailable) || !strings.Contains(err.Error(), "NOT delivered") {
		t.Fatalf("report to a closed publisher: %v; want unavailable, not delivered", err)
	}
	if kept, err := relay.Problems(node.ProblemQuery{}); err != nil || len(kept) != 0 {
		t.Fatalf("the relaying node keeps %v (%v) after a failed relay", kept, err)
	}
	pub = f.Restart(0)
	if held, err := pub.Problems(node.ProblemQuery{}); err != nil || len(held) != 1 || held[0].State != api.ProblemClosed {
		t.Fatalf("after restart the publisher holds %+v (%v); want the one closed report", held, err)
	}
}

// A closed report (it may hold a person's name and email address) is
// deleted once [problems] keep_closed has passed; an open one is kept
// however old, as the officer has not seen to it.
func TestClosedProblemReportsExpire(t *testing.T) {
	const keep = 2 * time.Second
	f := nodetest.NewFederation(t, 1, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.Problems.KeepClosed = keep.String()
	}})
	pub := f.Nodes[0]
	rec := f.PublishAndWaitListed(0, "spend", []byte("a,b\n1,2\n"), nii.Metadata{Title: "Spend", Access: nii.AccessOpen})
	d := rec.Ref.Dataset
	ctx := context.Background()
	closing, err := pub.ReportProblem(ctx, d, api.ProblemSubmission{Name: "A Resident", Email: "a@example.org", Message: "row 3 is doubled"})
	if err != nil {
		t.Fatal(err)
	}
	open, err := pub.ReportProblem(ctx, d, api.ProblemSubmission{Message: "the June file is missing"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.CloseProblem(closing.ID); err != nil {
		t.Fatal(err)
	}
	ids := func() []string {
		all, err := pub.Problems(node.ProblemQuery{Dataset: d.String()})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range all {
			out = append(out, p.ID)
		}
		return out
	}
	if got := ids(); len(got) != 2 {
		t.Fatalf("just after closing: %v; want both reports", got)
	}
	// badger's TTL counts whole seconds: the closed report is gone within
	// keep plus a second of rounding, plus scheduling slack.
	deadline := time.Now().Add(keep + time.Second + f.Bound())
	for {
		got := ids()
		if len(got) == 1 && got[0] == open.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after keep_closed %v; want only the open report %s", got, keep, open.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := pub.CloseProblem(closing.ID); !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("closing the expired report: %v; want not found", err)
	}
}

func TestProblemsKeepClosedValidated(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "forever": true, "720h": true, "1s": true, "10ms": false, "ninety days": false, "-1h": false} {
		cfg := node.DefaultConfig(t.TempDir())
		cfg.Org = "lambeth"
		cfg.Problems.KeepClosed = v
		err := cfg.Validate()
		if (err == nil) != ok {
			t.Errorf("keep_closed %q: %v; want ok=%v", v, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "problems.keep_closed") {
			t.Errorf("keep_closed %q: %v; want the setting named", v, err)
		}
	}
}

// The pages' report-form key is derived from the node's identity key: the
// same across a restart (a form left open still posts), another node's
// differs.
func TestReportFormKeyStableAcrossRestart(t *testing.T) {
	f := nodetest.NewFederation(t, 2, nodetest.Options{})
	k0, k1 := node.ReportFormKeyForTest(f.Nodes[0]), node.ReportFormKeyForTest(f.Nodes[1])
	if len(k0) != 32 || bytes.Equal(k0, k1) {
		t.Fatalf("keys %x and %x; want 32 bytes each, different per node", k0, k1)
	}
	if again := node.ReportFormKeyForTest(f.Restart(0)); !bytes.Equal(again, k0) {
		t.Fatalf("after a restart the key is %x; was %x", again, k0)
	}
}
