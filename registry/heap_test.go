package registry

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// TestCollectWhileGrowing: a catalog asks for a collection once every
// growBurst records applied, not before; CollectWhileGrowing runs it; and
// with no collector running, applying never waits on the request.
func TestCollectWhileGrowing(t *testing.T) {
	c, _ := openCat(t)
	other := newIdent()
	apply := func(from, to int) {
		for i := from; i < to; i++ {
			if _, isNew, err := c.Apply(other.Advert(t, uint64(i+1), fmt.Sprintf("ds-%d", i), 1, "Dataset")); err != nil || !isNew {
				t.Fatalf("record %d: new %v, %v", i, isNew, err)
			}
		}
	}
	// No collector yet: a full burst and more apply without waiting.
	apply(0, growBurst+10)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.CollectWhileGrowing(done) })
	defer func() { close(done); wg.Wait() }()
	// The request queued by the first burst is run once the collector
	// starts; the records short of the next burst ask for nothing.
	deadline := time.Now().Add(20 * time.Second)
	for c.Collections() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d collections after the first burst, want 1", c.Collections())
		}
		time.Sleep(5 * time.Millisecond)
	}
	apply(growBurst+10, 2*growBurst-1)
	if n := c.Collections(); n != 1 {
		t.Fatalf("%d collections one record short of the second burst, want 1", n)
	}
	apply(2*growBurst-1, 2*growBurst)
	for c.Collections() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d collections after the second burst, want 2", c.Collections())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCollectStepGrowsWithTheCatalog: past growBurst×growShare records the
// step between two requests is a fiftieth of the catalog, and a record
// signed here counts as one applied does.
func TestCollectStepGrowsWithTheCatalog(t *testing.T) {
	c, _ := openCat(t)
	asked := func() bool {
		select {
		case <-c.grew:
			return true
		default:
			return false
		}
	}
	if _, _, err := c.Sign(nii.Advert{Dataset: nii.DatasetID{Org: "greenwich", Name: "mine"}, Version: 1,
		Manifest: nii.HashOf([]byte("mine")), Meta: nii.Metadata{Title: "Mine", Publisher: "greenwich"}}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.added != 1 {
		t.Fatalf("%d records counted after one signed, want 1", c.added)
	}
	for i := range 4 * growBurst * growShare { // a large catalog, as far as the step can tell
		c.entries[nii.DatasetID{Org: "x", Name: fmt.Sprint(i)}] = nil
	}
	for c.added < growBurst-1 {
		c.noteGrowth()
	}
	if asked() {
		t.Fatal("a collection asked for before the first step")
	}
	c.noteGrowth()
	if !asked() {
		t.Fatal("no collection asked for at the first step")
	}
	step := int64(len(c.entries)) / growShare
	for range step - 1 {
		c.noteGrowth()
	}
	if asked() {
		t.Fatalf("a collection asked for before a step of %d records (a fiftieth of %d)", step, len(c.entries))
	}
	c.noteGrowth()
	if !asked() {
		t.Fatalf("no collection asked for after a step of %d records", step)
	}
}
