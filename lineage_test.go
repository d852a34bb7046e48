package nii_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
)

func TestMetadataKind(t *testing.T) {
	cases := []struct {
		name string
		meta nii.Metadata
		want string // "" = valid
	}{
		{"data", nii.Metadata{}, ""},
		{"standard", nii.Metadata{Kind: nii.KindStandard}, ""},
		{"merged", nii.Metadata{Kind: nii.KindMerged, ConformsTo: "lga/spend-over-500@1"}, ""},
		{"mapping", nii.Metadata{Kind: nii.KindMapping, ConformsTo: "lga/spend-over-500@1", AppliesTo: []string{"lambeth/spend", "lambeth/spend-*"}}, ""},
		{"unknown kind", nii.Metadata{Kind: "schema"}, `kind "schema"`},
		{"mapping without standard", nii.Metadata{Kind: nii.KindMapping, AppliesTo: []string{"lambeth/spend"}}, "conforms_to"},
		{"mapping without patterns", nii.Metadata{Kind: nii.KindMapping, ConformsTo: "lga/spend-over-500"}, "applies_to"},
		{"mapping with a bad pattern", nii.Metadata{Kind: nii.KindMapping, ConformsTo: "lga/s", AppliesTo: []string{"lambeth"}}, "dataset pattern"},
		{"patterns on data", nii.Metadata{AppliesTo: []string{"lambeth/spend"}}, "mappings only"},
		{"standard conforming", nii.Metadata{Kind: nii.KindStandard, ConformsTo: "x/y"}, "conforms to no other"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.meta.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, nii.ErrInvalid) {
				t.Fatalf("got %v, want an invalid error saying %q", err, c.want)
			}
		})
	}
}

func TestManifestLineage(t *testing.T) {
	m, priv := testManifest(t)
	std := nii.VersionCite{Dataset: nii.DatasetID{Org: "lga", Name: "spend-over-500"}, Version: 1, Manifest: nii.HashOf([]byte("std"))}
	m.Lineage = &nii.Lineage{Standard: std, SchemaHash: nii.HashOf([]byte("schema")), Inputs: []nii.LineageInput{{
		Source:   nii.VersionCite{Dataset: nii.DatasetID{Org: "lambeth", Name: "spend"}, Version: 3, Manifest: nii.HashOf([]byte("src"))},
		Mapping:  nii.VersionCite{Dataset: nii.DatasetID{Org: "lambeth", Name: "spend--map--lga-spend-over-500"}, Version: 1, Manifest: nii.HashOf([]byte("map"))},
		Accepted: 10, Rejected: 1,
	}}, Missing: []nii.LineageMissing{{Source: nii.VersionCite{Dataset: nii.DatasetID{Org: "camden", Name: "spend"}, Version: 2}, Reason: "unreachable"}}}
	if _, _, err := nii.SignManifest(m, priv); err == nil || !strings.Contains(err.Error(), "merged dataset") {
		t.Fatalf("a lineage on a plain dataset: got %v", err)
	}
	m.Meta.Kind = nii.KindMerged
	sm, _, err := nii.SignManifest(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := sm.Open()
	if err != nil {
		t.Fatal(err)
	}
	if got.Lineage == nil || len(got.Lineage.Inputs) != 1 || got.Lineage.Inputs[0].Mapping != m.Lineage.Inputs[0].Mapping ||
		got.Lineage.Missing[0].Reason != "unreachable" || got.Lineage.Standard != std {
		t.Fatalf("lineage did not survive the round trip: %+v", got.Lineage)
	}
	m.Lineage.Inputs[0].Source.Manifest = nii.Hash{}
	if _, _, err := nii.SignManifest(m, priv); err == nil || !errors.Is(err, nii.ErrInvalid) {
		t.Fatalf("an input without its manifest: got %v", err)
	}
}
