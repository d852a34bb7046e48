package search

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The term arena: each doc's term IDs, delta-encoded in one byte slice.

func TestTermIDsRoundTrip(t *testing.T) {
	for _, ids := range [][]uint32{nil, {0}, {7}, {0, 1, 2}, {5, 300, 70000, 1 << 21, math.MaxUint32 - 1, math.MaxUint32}} {
		enc := appendIDs(nil, ids)
		got, err := decodeIDs(nil, enc)
		if err != nil || !slices.Equal(got, ids) {
			t.Errorf("%v encodes as %x, decodes as %v %v", ids, enc, got, err)
		}
	}
	// Small gaps cost a byte each: what makes the arena small.
	if n := len(appendIDs(nil, []uint32{100, 101, 150, 227})); n != 4 {
		t.Errorf("four close IDs take %d bytes, want 4", n)
	}
	for _, bad := range [][]byte{{0x80}, {1, 0}, {0xff, 0xff, 0xff, 0xff, 0x10}, {0xff, 0xff, 0xff, 0xff, 0x0f, 1}} {
		if got, err := decodeIDs(nil, bad); err == nil {
			t.Errorf("%x decodes as %v, want an error", bad, got)
		}
	}
}

func FuzzDecodeIDs(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendIDs(nil, []uint32{1, 2, 300, 1 << 30}))
	f.Add([]byte{0x80, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := decodeIDs(nil, b)
		if err != nil {
			return
		}
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Fatalf("%x decodes to unsorted or repeated IDs %v", b, ids)
		}
		again, err := decodeIDs(nil, appendIDs(nil, ids))
		if err != nil || !slices.Equal(again, ids) {
			t.Fatalf("%v does not round-trip: %v %v", ids, again, err)
		}
	})
}

// TestTermArenaCompacts churns docs with the arena compacting often and
// checks every doc's term IDs are the ones its terms' posting lists hold.
func TestTermArenaCompacts(t *testing.T) {
	defer func(n int) { tgarbageMin = n }(tgarbageMin)
	tgarbageMin = 64
	rng := rand.New(rand.NewPCG(3, 4))
	docs := searchCorpus(500, 7)
	ix := NewCompactIndex()
	compactions := 0
	for i := range 3000 {
		d := docs[rng.IntN(len(docs))]
		d.Key = fmt.Sprintf("k%d", rng.IntN(300))
		before := len(ix.docTermIDs.data)
		if rng.IntN(3) == 0 {
			ix.Delete(d.Key)
		} else {
			ix.Put(d)
		}
		if len(ix.docTermIDs.data) < before {
			compactions++
		}
		if i%500 == 0 {
			checkSearchIndex(t, ix)
		}
	}
	checkSearchIndex(t, ix)
	if compactions == 0 {
		t.Fatal("the term arena never compacted: the test exercised too little")
	}
	used := 0
	for id := range ix.docTermIDs.ref {
		n := int(ix.docTermIDs.ref[id] & (1<<vrefShift - 1))
		if n > 0 && !ix.slots[id].live {
			t.Fatalf("dead doc %d has %d bytes of terms", id, n)
		}
		used += n
	}
	if len(ix.docTermIDs.data)-used != ix.docTermIDs.garbage {
		t.Fatalf("term arena: %d long, %d used, garbage %d", len(ix.docTermIDs.data), used, ix.docTermIDs.garbage)
	}
	// Every term a doc lists holds the doc, and every posting the doc's list.
	for key, id := range ix.byKey {
		tids := ix.docTerms(id)
		for _, tid := range tids {
			if ix.terms[tid].weight(id) == 0 {
				t.Fatalf("%s lists term %q, whose postings lack it", key, ix.terms[tid].name)
			}
		}
	}
}
