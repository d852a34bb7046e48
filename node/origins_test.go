package node_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/internal/niitest"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/nii-uk/nii/registry"
)

// One member gossips thousands of adverts, each signed by a fresh key that
// never joined the federation. The other member's catalog, its stored
// records and its member table stay bounded, CKAN does not list the fakes,
// and the real member's next advert still arrives.
func TestFloodOfFreshOriginsBounded(t *testing.T) {
	const fakes = 3000
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	flooder, victim := nodes[0], nodes[1]
	for i := range fakes {
		priv, origin := niitest.Key(t)
		a := nii.Advert{
			Origin: origin, Seq: 1, Dataset: nii.DatasetID{Org: fmt.Sprintf("fake%d", i), Name: "spend"},
			Version: 1, Manifest: nii.HashOf([]byte{byte(i), byte(i >> 8)}), Signed: time.Now().UTC(),
			Meta: nii.Metadata{Title: "fake", Publisher: fmt.Sprintf("fake%d", i), Access: nii.AccessOpen, Licence: "OGL-UK-3.0"},
		}
		sa, err := nii.SignAdvert(&a, priv)
		if err != nil {
			t.Fatal(err)
		}
		flooder.GossipForTest().Publish(sa, &a)
	}
	nodetest.WaitFor(t, 120*time.Second, "the victim has seen most of the flood", func() bool {
		r := victim.Catalog().Rejected()
		return r[registry.RejectNotMember]+r[registry.RejectOverload]+int64(victim.Catalog().Origins()) >= fakes/2
	})
	// A real advert from the flooder, queued behind the flood, still comes.
	ref := publishData(t, flooder, "spend", []byte("a,b\n1,2\n"), nii.AccessOpen)
	waitListed(t, victim, ref.Dataset.String(), 1)

	cat := victim.Catalog()
	if o := cat.Origins(); o > 2 {
		t.Errorf("the victim's catalog holds %d origins", o)
	}
	if k := victim.CountKeysForTest("ra/"); k > 2 {
		t.Errorf("the victim's store holds %d catalog records", k)
	}
	if p := cat.Parked(); p > registry.DefaultMaxParked {
		t.Errorf("%d records parked, over the bound %d", p, registry.DefaultMaxParked)
	}
	if k := victim.Peers().Len(); k != 1 {
		t.Errorf("the victim's member table lists %d members", k)
	}
	code, _, body := fetch(t, "GET", victim.APIAddr()+"/api/3/action/package_list", nil)
	var pl struct {
		Result []string `json:"result"`
	}
	if err := json.Unmarshal(body, &pl); code != 200 || err != nil || len(pl.Result) != 1 {
		t.Fatalf("package_list: %d, %d packages (%v)", code, len(pl.Result), err)
	}
}
