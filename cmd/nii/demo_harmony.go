package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
)

// The demo's harmonisation step: lga publishes the LGA spend standard,
// each borough publishes a mapping of its spend file to it
// (demodata/mappings), and gla keeps the merged view of them all current,
// so that 'nii merge', 'nii standards show', 'nii show --lineage' and 'nii
// query' have something to show.

const (
	demoStandardOrg = "lga"
	demoMergerOrg   = "gla"
	demoMergedName  = "london-spend"
)

var demoStandard = nii.DatasetID{Org: demoStandardOrg, Name: "spend-over-500"}

// demoSpendName is the name every demo borough publishes its spend under.
const demoSpendName = "spend"

func demoNode(nodes []*node.Node, org string) *node.Node {
	for _, n := range nodes {
		if n.Config().Org == org {
			return n
		}
	}
	return nil
}

// demoMappings are the mapping datasets the demo's boroughs publish.
func demoMappings() []nii.DatasetID {
	var out []nii.DatasetID
	for _, b := range demoBoroughs {
		for _, d := range b.datasets {
			if d.name == demoSpendName {
				ds := nii.DatasetID{Org: b.org, Name: d.name}
				out = append(out, nii.DatasetID{Org: b.org, Name: node.MappingName(b.org, ds, demoStandard)})
			}
		}
	}
	return out
}

// demoHarmony publishes the standard and the mappings (unless a kept
// --dir holds them already) and has gla keep the merged view current,
// returning once its first version is listed by every node.
func demoHarmony(ctx context.Context, nodes []*node.Node, deadline time.Time) error {
	lga, gla := demoNode(nodes, demoStandardOrg), demoNode(nodes, demoMergerOrg)
	if _, err := lga.Store().Latest(demoStandard); errors.Is(err, nii.ErrNotFound) {
		b, err := harmony.SampleStandard(harmony.LGASpend)
		if err != nil {
			return err
		}
		if _, err := lga.Publish(ctx, bytes.NewReader(b), node.PublishRequest{Name: demoStandard.Name, Filename: "lga-spend-over-500.schema.json",
			Meta: nii.Metadata{Title: "Spend over £500 (LGA/LGTC 2015)", Kind: nii.KindStandard, Licence: demoLicence,
				Description: "The Local Government Transparency Code 2015's spend over £500, as a Frictionless Table Schema: what every borough's mapping maps to.",
				Keywords:    []string{"spend", "transparency", "standard"}, Themes: []string{"finance"}}}); err != nil {
			return fmt.Errorf("lga: publish the standard: %w", err)
		}
	} else if err != nil {
		return err
	}
	if err := awaitCond(ctx, deadline, func() string {
		for _, n := range nodes {
			if _, err := n.LookupDataset(demoStandard); err != nil {
				return fmt.Sprintf("%s does not list %s yet", n.Config().Org, demoStandard)
			}
		}
		return ""
	}); err != nil {
		return err
	}
	for _, b := range demoBoroughs {
		for _, d := range b.datasets {
			if d.name != demoSpendName {
				continue
			}
			n := demoNode(nodes, b.org)
			ds := nii.DatasetID{Org: b.org, Name: d.name}
			if _, err := n.Store().Latest(nii.DatasetID{Org: b.org, Name: node.MappingName(b.org, ds, demoStandard)}); err == nil {
				continue
			}
			m, err := demoFiles.ReadFile(path.Join("demodata", "mappings", b.org+".map.toml"))
			if err != nil {
				return err
			}
			if _, err := n.PublishMapping(ctx, api.MappingPublishRequest{Dataset: ds.String(), Mapping: string(m), Licence: demoLicence}); err != nil {
				return fmt.Errorf("%s: publish the mapping of %s: %w", b.org, ds, err)
			}
		}
	}
	if err := awaitCond(ctx, deadline, func() string {
		for _, m := range demoMappings() {
			if _, err := gla.LookupDataset(m); err != nil {
				return fmt.Sprintf("gla does not list %s yet", m)
			}
		}
		return ""
	}); err != nil {
		return err
	}
	if _, err := gla.StartWatch(node.WatchRequest{Standard: nii.Ref{Dataset: demoStandard}, Name: demoMergedName,
		Title: "Spend over £500, every demo borough (merged)"}); err != nil {
		return fmt.Errorf("gla: keep the merged view current: %w", err)
	}
	merged := nii.DatasetID{Org: demoMergerOrg, Name: demoMergedName}
	return awaitCond(ctx, deadline, func() string {
		ws, err := gla.Watches()
		if err != nil {
			return err.Error()
		}
		for _, w := range ws {
			if w.Publish == merged && w.State != node.WatchCurrent {
				if w.LastError != "" {
					return "gla's merge: " + w.LastError
				}
				return "gla is merging"
			}
		}
		for _, n := range nodes {
			if _, err := n.LookupDataset(merged); err != nil {
				return fmt.Sprintf("%s does not list %s yet", n.Config().Org, merged)
			}
		}
		return ""
	})
}

// awaitCond polls, with a deadline, until missing says nothing is.
func awaitCond(ctx context.Context, deadline time.Time, missing func() string) error {
	for {
		m := missing()
		if m == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo federation did not converge in time: %s (try a longer --timeout on a busy machine)", m)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// printDemoHarmony prints the harmonisation commands of the demo.
func printDemoHarmony(w io.Writer, bin string, info DemoInfo) {
	gla, lambeth := demoNodeHome(info, demoMergerOrg), demoNodeHome(info, "lambeth")
	fmt.Fprintf(w, `

Harmonised spend: lga publishes the LGA spend standard (%s), each borough a
mapping of its spend file to it, and gla keeps %s, the merged view, current
(it merges again whenever a borough publishes a new version):

  %s --home %s standards                         # the standard, who conforms, with which mapping
  %s --home %s standards show %s       # fields, coverage by borough and month, validation scores
  %s --home %s merge %s -o london-spend.csv --rejects rejects.csv
  %s --home %s show %s@1 --lineage      # every source and mapping, each signature checked
  %s --home %s query "SELECT _publisher, date_trunc('month', date) m, sum(amount) FROM '%s' GROUP BY ALL ORDER BY 1,2"
  %s --home %s map suggest lambeth/spend --to %s   # what nii proposes for Lambeth's layout`,
		info.Standard, info.Merged,
		bin, gla,
		bin, gla, info.Standard,
		bin, gla, info.Standard,
		bin, lambeth, info.Merged,
		bin, gla, info.Standard,
		bin, lambeth, info.Standard)
}
