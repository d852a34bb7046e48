package registry

import (
	"fmt"
	"sync"
	"testing"
	"time"
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
