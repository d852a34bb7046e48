package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
)

// TestProviderErrorsCounted: each provider a pull dropped, completed or
// failed, is counted under its own label, and past the label bound under
// "other", beside its bytes.
func TestProviderErrorsCounted(t *testing.T) {
	var st transferStats
	a, b := nii.NodeID("12D3KooWa"), nii.NodeID("12D3KooWb")
	st.pulled(&exchange.PullResult{Providers: map[nii.NodeID]int64{a: 10}, ProviderChunks: map[nii.NodeID]int{a: 1}, FetchedBytes: 10, FetchedChunks: 1}, time.Second)
	st.dropped(&exchange.PullResult{Dropped: []nii.NodeID{b}})
	st.dropped(&exchange.PullResult{Dropped: []nii.NodeID{a, b}})
	st.dropped(nil)
	if f := st.providers[a]; f == nil || f.errors != 1 || f.bytes != 10 {
		t.Errorf("provider a: %+v, want 1 error beside its 10 bytes", f)
	}
	if f := st.providers[b]; f == nil || f.errors != 2 || f.bytes != 0 {
		t.Errorf("provider b: %+v, want 2 errors", f)
	}
	for i := len(st.providers); i < maxProviderLabels; i++ {
		st.provider(nii.NodeID(fmt.Sprintf("12D3KooWfill%d", i)))
	}
	st.dropped(&exchange.PullResult{Dropped: []nii.NodeID{"12D3KooWlate", "12D3KooWlater"}})
	if f := st.providers["other"]; f == nil || f.errors != 2 || len(st.providers) != maxProviderLabels+1 {
		t.Errorf("past the label bound: other = %+v, %d labels", f, len(st.providers))
	}
}
