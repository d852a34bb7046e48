package registry

import "runtime"

// Collecting while the catalog grows.
//
// A catalog built from 100,000 arriving adverts settled at 182–191 MiB of
// heap in use, though its live objects (pprof) were the same ~118 MB as a
// catalog loaded from the store, which settles at 139–143 MiB. The rest
// was fragmentation: each advert applied leaves about 13 KB of garbage
// (decoding, signature check, text analysis, badger's transaction) beside
// the few hundred bytes it keeps, and between two of the runtime's
// collections (the heap doubling, at GOGC 100) the records kept are
// spread over spans that the garbage shares; once it is collected those
// spans stay in use, part empty. Collecting every growBurst records while
// the catalog grows fast keeps the garbage freed before the next records
// are placed, so they fill the holes: the same build settled at 137 MiB
// (a collection every 2,000 adverts; every 8,000 gave 164 MiB).
// docs/benchmarks.md, "Catalog heap: collecting while it grows".

// growBurst is how many records applied make the catalog ask for a
// collection (CollectWhileGrowing). A federation's steady trickle reaches
// it rarely; a node catching up with a large catalog, every 2,048 records.
const growBurst = 2048

// CollectWhileGrowing runs, until done is closed, a garbage collection each
// time growBurst more records have been applied (at most one queued: a
// collection asked for while one runs is merged with it). Collections run
// on this goroutine, concurrently with the appliers, which do not wait.
// The node runs it for as long as its catalog is open.
func (c *Catalog) CollectWhileGrowing(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-c.grew:
			runtime.GC()
			c.collections.Add(1)
		}
	}
}

// Collections returns how many collections CollectWhileGrowing ran.
func (c *Catalog) Collections() int64 { return c.collections.Load() }

// noteApplied counts one applied record and asks for a collection every
// growBurst of them.
func (c *Catalog) noteApplied() {
	if c.applied.Add(1)%growBurst == 0 {
		select {
		case c.grew <- struct{}{}:
		default:
		}
	}
}
