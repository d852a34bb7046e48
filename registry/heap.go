package registry

import (
	"os"
	"runtime"
	"strings"
)

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
// Updates of records held count as well: they leave the same garbage.
// docs/benchmarks.md, "Catalog heap: collecting while it grows".

// growBurst is the fewest records added between two collections asked
// for (CollectWhileGrowing); past 102,400 records the step is a fiftieth
// of the catalog (growShare), so the garbage left between two collections
// stays about a fifth of the live heap (2,000 adverts' garbage at 100k is
// 26 MB of ~118 MB live), and the collections' cost stays proportional to
// the catalog, not to its square. A federation's steady trickle reaches
// a step rarely; a node catching up with a large catalog, often.
const (
	growBurst = 2048
	growShare = 50
)

// CollectWhileGrowing runs, until done is closed, a garbage collection each
// time a step of records has been added (at most one queued: a
// collection asked for while one runs is merged with it). Collections run
// on this goroutine, concurrently with the appliers, which do not wait.
// With GOGC=off (the operator turned collection off) it runs none. The
// node runs it for as long as its catalog is open.
func (c *Catalog) CollectWhileGrowing(done <-chan struct{}) {
	off := strings.EqualFold(os.Getenv("GOGC"), "off")
	for {
		select {
		case <-done:
			return
		case <-c.grew:
			if !off {
				runtime.GC()
				c.collections.Add(1)
			}
		}
	}
}

// Collections returns how many collections CollectWhileGrowing ran.
func (c *Catalog) Collections() int64 { return c.collections.Load() }

// noteGrowth counts one record added (applied from the federation, or
// signed here) and asks for a collection once a step of them has been.
// c.mu held.
func (c *Catalog) noteGrowth() {
	if c.added++; c.added < c.nextCollect {
		return
	}
	c.nextCollect = c.added + max(growBurst, int64(len(c.entries))/growShare)
	select {
	case c.grew <- struct{}{}:
	default:
	}
}
