package search

import (
	"slices"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"
)

// Field weights for ranking.
const (
	wTitle       = 3
	wKeyword     = 2
	wTheme       = 2
	wDatasetName = 2
	wColumn      = 1
	wDescription = 1
	wPublisher   = 1
)

// BM25 parameters.
const (
	bm25K1 = 1.2
	bm25B  = 0.5
	// prefixBoost discounts a prefix expansion against an exact match.
	prefixBoost = 0.8
	// minIDF: a query term whose idf is below this (it is in more than
	// about 99.9% of docs) is not scored, only matched.
	minIDF = 1e-3
)

type sortMode int

const (
	sortRelevance sortMode = iota
	sortModified
	sortTitle
	sortKey
)

type item struct {
	id    uint32
	score float64
}

// better reports whether a ranks before b: by score (relevance) or title,
// then newest first, then key.
func (ix *Index) better(mode sortMode, a, b item) bool {
	switch mode {
	case sortRelevance:
		if a.score != b.score {
			return a.score > b.score
		}
	case sortTitle:
		if c := strings.Compare(ix.title[a.id], ix.title[b.id]); c != 0 {
			return c < 0
		}
	case sortKey:
		return ix.slots[a.id].doc.Key < ix.slots[b.id].doc.Key
	}
	if ma, mb := ix.mod[a.id], ix.mod[b.id]; ma != mb {
		return ma > mb
	}
	return ix.slots[a.id].doc.Key < ix.slots[b.id].doc.Key
}

// rank returns the best k docs of match, best first, keeping a bounded
// heap of the k best seen so far.
func (ix *Index) rank(match *roaring.Bitmap, groups []group, mode sortMode, k int) []item {
	var sc *scorer
	if mode == sortRelevance {
		sc = ix.newScorer(groups, match.GetCardinality())
	}
	// h is a heap with the worst kept item at h[0].
	h := make([]item, 0, k)
	worse := func(i, j int) bool { return ix.better(mode, h[j], h[i]) }
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= len(h) {
				return
			}
			if c+1 < len(h) && worse(c+1, c) {
				c++
			}
			if !worse(c, i) {
				return
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
	}
	up := func(i int) {
		for i > 0 {
			p := (i - 1) / 2
			if !worse(i, p) {
				return
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
	}
	// Most docs lose to the worst kept on the primary key alone, so that
	// is checked first against a copy of it.
	var worstScore float64
	var worstMod int64
	var worstTitle string
	mods, titles := ix.mod, ix.title
	keep := func(x item) {
		if len(h) < k {
			h = append(h, x)
			up(len(h) - 1)
		} else if ix.better(mode, x, h[0]) {
			h[0] = x
			down(0)
		} else {
			return
		}
		if len(h) == k {
			worstScore, worstMod, worstTitle = h[0].score, mods[h[0].id], titles[h[0].id]
		}
	}
	var buf [256]uint32
	it := match.ManyIterator()
	for n := it.NextMany(buf[:]); n > 0; n = it.NextMany(buf[:]) {
		switch {
		case mode == sortRelevance:
			for _, id := range buf[:n] {
				x := item{id, sc.score(id)}
				if len(h) < k || x.score >= worstScore {
					keep(x)
				}
			}
		case mode == sortModified:
			for _, id := range buf[:n] {
				if len(h) < k || mods[id] >= worstMod {
					keep(item{id: id})
				}
			}
		case mode == sortKey:
			for _, id := range buf[:n] {
				keep(item{id: id})
			}
		default: // title
			for _, id := range buf[:n] {
				if len(h) < k || titles[id] <= worstTitle {
					keep(item{id: id})
				}
			}
		}
	}
	slices.SortFunc(h, func(a, b item) int {
		if ix.better(mode, a, b) {
			return -1
		}
		if ix.better(mode, b, a) {
			return 1
		}
		return 0
	})
	return h
}

// cursor walks one term's postings in doc order, tracking rank so that
// each doc's weight can be read.
type cursor struct {
	t      *term
	idf    float64
	sparse bool // look docs up by Rank instead of walking
	it     roaring.ManyIntIterable
	buf    []uint32
	pos    int // index in buf of the first doc not yet passed
	base   int // rank-1 of buf[0]
	done   bool
}

// weight returns doc d's weighted frequency of the term, 0 if none. Docs
// must be asked for in increasing order.
func (c *cursor) weight(d uint32) uint8 {
	if c.sparse {
		return c.t.weight(d)
	}
	for !c.done {
		b := c.buf
		if len(b) > 0 && b[len(b)-1] >= d {
			i := c.pos
			// Matches are usually close together: step, then bisect.
			for end := min(i+8, len(b)); i < end && b[i] < d; i++ {
			}
			if b[i] < d {
				j, _ := slices.BinarySearch(b[i:], d)
				i += j
			}
			c.pos = i
			if b[i] == d {
				return c.t.w[c.base+i]
			}
			return 0
		}
		c.base += len(b)
		n := c.it.NextMany(c.buf[:cap(c.buf)])
		c.buf = c.buf[:n]
		c.pos = 0
		c.done = n == 0
	}
	return 0
}

type scorer struct {
	ix      *Index
	groups  []scoreGroup
	cursors []cursor
	// BM25's length normalisation k1·(1 − b + b·dl/avgdl) = n0 + n1·dl.
	n0, n1 float64
}

func (ix *Index) newScorer(groups []group, matches uint64) *scorer {
	avg := ix.sumDL / float64(max(len(ix.byKey), 1))
	if avg <= 0 {
		avg = 1
	}
	sc := &scorer{ix: ix, groups: make([]scoreGroup, 0, len(groups)), n0: bm25K1 * (1 - bm25B), n1: bm25K1 * bm25B / avg}
	total := 0
	for _, g := range groups {
		total += len(g.tids)
	}
	sc.cursors = make([]cursor, total)
	var bufs []uint32
	k := 0
	for _, g := range groups {
		if len(g.singles) == 0 && slices.Max(g.idf) < minIDF {
			// In (nearly) every doc: it filters but cannot rank.
			continue
		}
		cs := sc.cursors[k : k+len(g.tids)]
		k += len(g.tids)
		for j, tid := range g.tids {
			t := &ix.terms[tid]
			c := cursor{t: t, idf: g.idf[j]}
			// Walking costs the posting list's length; a Rank lookup costs
			// up to a container scan per match.
			if t.bm == nil || matches*64 < uint64(t.df()) {
				c.sparse = true
			} else {
				if len(bufs) < 128 {
					bufs = make([]uint32, 128*16)
				}
				c.buf, bufs = bufs[:0:128], bufs[128:]
				c.it = t.bm.ManyIterator()
			}
			cs[j] = c
		}
		sc.groups = append(sc.groups, scoreGroup{cursors: cs, singles: g.singles})
	}
	return sc
}

type scoreGroup struct {
	cursors []cursor
	singles []single // by doc; those before next are passed
	next    int
}

// score returns doc d's BM25 score: per query term, the best of its
// matching terms' idf × saturated weighted frequency, summed. Docs must be
// scored in increasing order.
func (sc *scorer) score(d uint32) float64 {
	norm := sc.n0 + sc.n1*float64(sc.ix.dl[d])
	var total float64
	for gi := range sc.groups {
		g := &sc.groups[gi]
		best := 0.0
		for i := range g.cursors {
			c := &g.cursors[i]
			if w := c.weight(d); w > 0 {
				tf := float64(w)
				best = max(best, c.idf*tf*(bm25K1+1)/(tf+norm))
			}
		}
		for ; g.next < len(g.singles) && g.singles[g.next].doc <= d; g.next++ {
			if x := g.singles[g.next]; x.doc == d {
				tf := float64(x.w)
				best = max(best, x.idf*tf*(bm25K1+1)/(tf+norm))
			}
		}
		total += best
	}
	return total
}
