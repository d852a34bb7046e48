package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry/table"
	"github.com/spf13/cobra"
)

func searchCmd(g *globals) *cobra.Command {
	var (
		publisher, theme, keyword, licence, format, access, conforms []string
		sort                                                         string
		limit, offset                                                int
		facets, unverified                                           bool
	)
	c := &cobra.Command{
		Use:   "search [QUERY] [--publisher ORG] [--theme T] ...",
		Short: "Search the federated catalog",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if len(args) == 1 {
				q.Set("q", args[0])
			}
			for k, vs := range map[string][]string{"publisher": publisher, "theme": theme, "keyword": keyword,
				"licence": licence, "format": format, "access": access, "conforms_to": conforms} {
				for _, v := range vs {
					q.Add(k, v)
				}
			}
			if sort != "" {
				q.Set("sort", sort)
			}
			if unverified {
				q.Set("verified", "false")
			}
			q.Set("limit", strconv.Itoa(limit))
			q.Set("offset", strconv.Itoa(offset))
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			res, err := cl.Search(cmd.Context(), q)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			if res.Total == 0 {
				fmt.Fprintln(out, "no datasets match")
				return nil
			}
			w := tabw(out)
			fmt.Fprintln(w, "DATASET\tVERSION\tFORMAT\tSIZE\tPUBLISHER\tSTATUS\tTITLE")
			for _, h := range res.Hits {
				status := "online"
				if !h.Online {
					status = "offline since " + h.LastSeen.Format("2006-01-02 15:04")
				}
				if !h.Verified {
					status += ", unverified"
				}
				if h.Claim != "" {
					status += ", claim " + h.Claim
				}
				fmt.Fprintf(w, "%s\t@%d\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Version, table.FormatName(h.Meta.MediaType),
					humanize.IBytes(uint64(h.Meta.ByteSize)), h.Meta.Publisher, status, h.Meta.Title)
			}
			w.Flush()
			fmt.Fprintf(out, "%d–%d of %d\n", res.Offset+1, res.Offset+len(res.Hits), res.Total)
			if facets {
				for _, f := range []string{"publisher", "theme", "keyword", "licence", "format", "access"} {
					var parts []string
					for _, fc := range res.Facets[f] {
						parts = append(parts, fmt.Sprintf("%s (%d)", fc.Value, fc.Count))
					}
					if len(parts) > 0 {
						fmt.Fprintf(out, "%s: %s\n", f, strings.Join(parts, ", "))
					}
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&publisher, "publisher", nil, "only this publisher (org); repeatable")
	f.StringArrayVar(&theme, "theme", nil, "only this theme; repeatable")
	f.StringArrayVar(&keyword, "keyword", nil, "only this keyword; repeatable")
	f.StringArrayVar(&licence, "licence", nil, "only this licence; repeatable")
	f.StringArrayVar(&format, "format", nil, "only this format (csv, json, ...); repeatable")
	f.StringArrayVar(&access, "access", nil, "open or restricted")
	f.StringArrayVar(&conforms, "conforms-to", nil, "only data conforming to this standard")
	f.StringVar(&sort, "sort", "", "relevance (default), modified or title")
	f.IntVar(&limit, "limit", 20, "results per page (1 to 1000)")
	f.IntVar(&offset, "offset", 0, "skip this many results")
	f.BoolVar(&facets, "facets", false, "also print facet counts")
	f.BoolVar(&unverified, "unverified", false, "list the claims no membership credential proves (kept apart from the verified catalog on a node with trust anchors)")
	addJSON(c, g)
	return c
}

func peersCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "peers",
		Short: "List the federation's members: org, state, last seen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fetchAndPrint(cmd, g, (*api.Client).Peers, printPeers)
		},
	}
	addJSON(c, g)
	return c
}

func printPeers(out io.Writer, ps []api.PeerInfo) error {
	if len(ps) == 0 {
		fmt.Fprintln(out, "no peers yet: join a federation with 'nii run --join HOST:PORT'")
		return nil
	}
	w := tabw(out)
	fmt.Fprintln(w, "NODE\tORG\tSTATE\tLAST SEEN\tDATASETS\tGOSSIP\tP2P")
	for _, p := range ps {
		org := p.Org
		if p.Registry {
			org += " (registry)"
		}
		if !p.Verified {
			org += " (unverified)"
		}
		conn := "-"
		if len(p.Transports) > 0 {
			conn = strings.Join(p.Transports, "+")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, org, p.State, ago(p.LastSeen, p.Online()), p.Datasets, p.Gossip, conn)
	}
	return w.Flush()
}

func ago(t time.Time, online bool) string {
	if online {
		return "now"
	}
	if t.IsZero() {
		return "never"
	}
	return humanize.Time(t)
}

func withdrawCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "withdraw ORG/NAME [--json]",
		Short: "Stop the federation listing one of this node's datasets (a signed tombstone)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDataset(cmd, g, args[0], func(cl *api.Client, d nii.DatasetID) error {
				if err := cl.Withdraw(cmd.Context(), d); err != nil {
					return err
				}
				if g.json {
					return printJSON(cmd.OutOrStdout(), api.WithdrawResult{Withdrawn: d.String()})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "withdrew %s: the federation will stop listing it within seconds; the data stays in this node's store\n", d)
				return nil
			})
		},
	}
	addJSON(c, g)
	return c
}

// showVersionOrCatalog prints a locally held version when @N names one,
// otherwise what the federation knows of the dataset.
func showRef(cmd *cobra.Command, g *globals, cl *api.Client, ref nii.Ref, unverified bool) error {
	lookup := cl.CatalogDataset
	if unverified {
		lookup = cl.CatalogDatasetUnverified
	}
	out := cmd.OutOrStdout()
	if ref.Version != 0 {
		v, err := cl.Version(cmd.Context(), ref)
		var re *api.RemoteError
		if err == nil {
			if g.json {
				return printJSON(out, v)
			}
			return printVersion(out, v)
		}
		if !errors.As(err, &re) || re.Status != 404 {
			return err
		}
		cd, cerr := lookup(cmd.Context(), ref.Dataset)
		if cerr != nil {
			return err
		}
		return fmt.Errorf("%s is not held on this node; the federation lists %s@%d (pull it to see older versions)", ref, cd.ID, cd.Version)
	}
	cd, err := lookup(cmd.Context(), ref.Dataset)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(out, cd)
	}
	return printCatalogDataset(out, cd)
}

func printCatalogDataset(out io.Writer, cd *api.CatalogDataset) error {
	m := cd.Meta
	w := tabw(out)
	if cd.Withdrawn {
		// A tombstone has no version, manifest or file: say what it is.
		fmt.Fprintf(w, "%s\twithdrawn\n", cd.ID)
		fmt.Fprintf(w, "status\twithdrawn on %s, by node %s (org %s)\n", cd.Signed.Format("2006-01-02 15:04:05 MST"), cd.Publisher, orDash(m.Publisher))
		if cd.Local != nil {
			var vs []string
			for _, v := range cd.Local.Versions {
				vs = append(vs, "@"+strconv.FormatUint(v.Version, 10))
			}
			fmt.Fprintf(w, "held here\t%s (still in this node's store)\n", strings.Join(vs, " "))
		}
		return w.Flush()
	}
	fmt.Fprintf(w, "%s@%d\t%s\n", cd.ID, cd.Version, m.Title)
	if m.Description != "" {
		fmt.Fprintf(w, "description\t%s\n", m.Description)
	}
	verified := "unverified (no membership credential proves the org)"
	if cd.Verified {
		verified = "verified"
	}
	fmt.Fprintf(w, "publisher\t%s %s, %s\n", m.Publisher, m.PublisherName, verified)
	fmt.Fprintf(w, "publisher node\t%s (%s)\n", cd.Publisher, presence(cd.Online, cd.LastSeen))
	fmt.Fprintf(w, "licence\t%s\n", orDash(m.Licence))
	fmt.Fprintf(w, "access\t%s\n", m.Access)
	if len(m.Keywords) > 0 {
		fmt.Fprintf(w, "keywords\t%s\n", strings.Join(m.Keywords, ", "))
	}
	if len(m.Themes) > 0 {
		fmt.Fprintf(w, "themes\t%s\n", strings.Join(m.Themes, ", "))
	}
	fmt.Fprintf(w, "file\t%s (%s, %s)\n", orDash(m.Filename), m.MediaType, humanize.IBytes(uint64(m.ByteSize)))
	fmt.Fprintf(w, "modified\t%s\n", m.Modified.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "manifest\t%s\n", cd.Manifest)
	for _, p := range cd.Providers {
		kind := "publisher"
		if p.Replica {
			kind = "replica"
		}
		fmt.Fprintf(w, "provider\t%s %s @%d (%s)\n", p.Node, kind, p.Version, presence(p.Online, p.LastSeen))
	}
	for _, p := range cd.Others {
		fmt.Fprintf(w, "also claimed by\t%s (org %s, verified %v)\n", p.Node, p.Org, p.Verified)
	}
	if cd.Local != nil {
		var vs []string
		for _, v := range cd.Local.Versions {
			vs = append(vs, "@"+strconv.FormatUint(v.Version, 10))
		}
		fmt.Fprintf(w, "held here\t%s\n", strings.Join(vs, " "))
	}
	if t := m.Table; t != nil {
		fmt.Fprintf(w, "table\t%d rows\n", t.Rows)
		for _, c := range t.Columns {
			fmt.Fprintf(w, "  %s\t%s %s\n", c.Name, c.Type, c.Format)
		}
	}
	return w.Flush()
}

func presence(online bool, seen time.Time) string {
	if online {
		return "online"
	}
	if seen.IsZero() {
		return "offline"
	}
	return "offline, last seen " + humanize.Time(seen)
}
