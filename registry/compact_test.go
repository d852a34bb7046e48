package registry

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// The compact structures of the catalog's memory: interned strings and
// lists, stamps, and the list of names kept as dataset IDs.

func TestInternerKeepsOneCopyAndTellsListsApart(t *testing.T) {
	in := newInterner()
	if in.id("") != 0 || in.str(0) != "" || in.listID(nil) != 0 || in.list(0) != nil {
		t.Fatal("the empty string and list are not number 0")
	}
	a := in.id(strings.Clone("camden"))
	if b := in.id(strings.Clone("camden")); a != b || a == 0 || in.str(a) != "camden" {
		t.Fatalf("camden interned as %d then %d (%q)", a, b, in.str(a))
	}
	if in.of(strings.Clone("camden")) != in.str(a) {
		t.Fatal("of does not return the held copy")
	}
	// Lists that one naive joining would confuse are different lists.
	lists := [][]string{
		{"ab"}, {"a", "b"}, {"a", "a", "b"}, {"\x00b", "a"}, {"a\x00", "b"}, {"", "a"}, {"a"}, {"", ""}, {""},
	}
	ids := map[lid][]string{}
	for _, l := range lists {
		id := in.listID(slices.Clone(l))
		if prev, ok := ids[id]; ok {
			t.Fatalf("%q and %q share list number %d", prev, l, id)
		}
		ids[id] = l
		if again := in.listID(slices.Clone(l)); again != id {
			t.Fatalf("%q interned as %d then %d", l, id, again)
		}
		rev := slices.Clone(l)
		slices.Reverse(rev)
		if in.listID(rev) != id {
			t.Fatalf("%q reversed is another list", l)
		}
		if got := in.list(id); !slices.Equal(got, slices.Sorted(slices.Values(l))) {
			t.Fatalf("list %d reads back as %q, want %q", id, got, l)
		}
	}
	// A list's strings are the interned copies.
	if got := in.list(in.listID([]string{strings.Clone("camden")})); got[0] != in.str(a) {
		t.Fatal("a list's string is not the interned one")
	}
}

func FuzzInternerLists(f *testing.F) {
	f.Add("a\x00b", "a", "\x00b")
	f.Add("", "", "")
	f.Add("spend", "trees", "spend")
	f.Fuzz(func(t *testing.T, x, y, z string) {
		in := newInterner()
		// Lists cut and joined from the three strings: lists of the same
		// strings (in any order), and only those, share a number.
		cands := [][]string{{x, y, z}, {z, y, x}, {x, y}, {y, x}, {y, z}, {x}, {y}, {z}, {x + y, z}, {x, y + z}, {x + y + z}}
		sorted := func(l []string) []string { return slices.Sorted(slices.Values(l)) }
		for _, a := range cands {
			for _, b := range cands {
				if (in.listID(a) == in.listID(b)) != slices.Equal(sorted(a), sorted(b)) {
					t.Fatalf("%q and %q: numbers %d and %d", a, b, in.listID(a), in.listID(b))
				}
			}
			if got := in.list(in.listID(a)); !slices.Equal(got, sorted(a)) {
				t.Fatalf("%q reads back as %q", a, got)
			}
		}
	})
}

func TestStampRoundTrips(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 1, 1, 12, 0, 0, 999_999_999, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(1600, 6, 1, 0, 0, 0, 5, time.UTC), // before the Unix-nanosecond range
		time.Date(2024, 1, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600)),
	}
	for _, tm := range times {
		got := stampOf(tm).time()
		if !got.Equal(tm) || got.IsZero() != tm.IsZero() || got.Location() != time.UTC {
			t.Errorf("%v round-trips as %v", tm, got)
		}
		if stampOf(tm).isZero() != tm.IsZero() {
			t.Errorf("%v: isZero %v", tm, stampOf(tm).isZero())
		}
	}
	if (time.Time{}) != stampOf(time.Time{}).time() {
		t.Error("the zero time does not read back as time.Time{}")
	}
	for i, a := range times {
		for _, b := range times[i:] {
			if stampOf(a).before(stampOf(b)) != a.Before(b) {
				t.Errorf("%v before %v: stamps say %v", a, b, !a.Before(b))
			}
		}
	}
}

func TestCmpListNameIsListNameOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	parts := []string{"", "a", "b", "-", "a-b", "b-", "-a", "ab", "aa", "\xff", "z"}
	for range 20000 {
		x := nii.DatasetID{Org: parts[r.IntN(len(parts))] + parts[r.IntN(len(parts))], Name: parts[r.IntN(len(parts))]}
		y := nii.DatasetID{Org: parts[r.IntN(len(parts))], Name: parts[r.IntN(len(parts))] + parts[r.IntN(len(parts))]}
		if got, want := cmpListName(x, y), strings.Compare(ListName(x), ListName(y)); got != want {
			t.Fatalf("cmpListName(%q, %q) = %d, ListNames compare %d", x, y, got, want)
		}
	}
}

// TestListedNamesShareAName lists datasets whose CKAN names are one name
// ("a-b"/"c" and "a"/"b-c" are both "a-b-c"): once in package_list,
// counted once, until the last of them goes.
func TestListedNamesShareAName(t *testing.T) {
	c, _ := openCat(t)
	ids := []nii.DatasetID{{Org: "a-b", Name: "c"}, {Org: "a", Name: "b-c"}, {Org: "a", Name: "b"}, {Org: "a-b-c", Name: "d"}, {Org: "a", Name: "b-c-d"}}
	for _, d := range ids {
		if _, _, err := c.Sign(nii.Advert{Dataset: d, Version: 1, Manifest: nii.HashOf([]byte(d.String())), Meta: nii.Metadata{Title: d.Name, Publisher: d.Org, Access: nii.AccessOpen}}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"a-b", "a-b-c", "a-b-c-d"}
	check := func(step string, want []string) {
		t.Helper()
		got, total := c.ListedNames(0, -1)
		if !slices.Equal(got, want) || total != len(want) {
			t.Fatalf("%s: ListedNames = %q (total %d), want %q", step, got, total, want)
		}
		for off := range len(want) + 1 {
			page, total := c.ListedNames(off, 1)
			if total != len(want) || !slices.Equal(page, want[off:min(off+1, len(want))]) {
				t.Fatalf("%s: ListedNames(%d, 1) = %q (total %d), want %q", step, off, page, total, want[off:min(off+1, len(want))])
			}
		}
	}
	check("five datasets, three names", want)
	withdraw := func(d nii.DatasetID) {
		t.Helper()
		if _, _, err := c.Sign(nii.Advert{Dataset: d, Version: 2, Withdrawn: true, Meta: nii.Metadata{Publisher: d.Org}}); err != nil {
			t.Fatal(err)
		}
	}
	withdraw(ids[0])
	check("a-b/c withdrawn: a/b-c still names a-b-c", want)
	withdraw(ids[1])
	check("both withdrawn", []string{"a-b", "a-b-c-d"})
	withdraw(ids[4])
	check("a/b-c-d withdrawn", []string{"a-b", "a-b-c-d"})
	withdraw(ids[3])
	check("a-b-c/d withdrawn", []string{"a-b"})
}
