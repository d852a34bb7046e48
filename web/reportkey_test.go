package web

import (
	"bytes"
	"testing"
)

// A report form's token signed before a restart is still accepted after
// it when the handler is given the same key (the node derives it from its
// identity key), and is refused under another key; a key of the wrong
// length is refused at start.
func TestReportTokenSurvivesRestartWithItsKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	before, err := New(nil, Config{ReportKey: key})
	if err != nil {
		t.Fatal(err)
	}
	tok := before.signReport("nonce-1")
	after, err := New(nil, Config{ReportKey: bytes.Clone(key)})
	if err != nil {
		t.Fatal(err)
	}
	if !after.validReportToken(tok) {
		t.Fatal("the same key after a restart refuses the token signed before it")
	}
	other, err := New(nil, Config{ReportKey: bytes.Repeat([]byte{8}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if other.validReportToken(tok) {
		t.Fatal("another key accepts the token")
	}
	random, err := New(nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if random.validReportToken(tok) {
		t.Fatal("a process's random key accepts a token it did not sign")
	}
	if _, err := New(nil, Config{ReportKey: key[:16]}); err == nil {
		t.Fatal("a 16-byte report key was accepted")
	}
}
