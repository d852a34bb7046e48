package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/spf13/cobra"
)

// Standards, mappings and merges: nii map suggest|check|publish, nii
// standards [show], nii merge, and the --lineage of nii show. Each is one
// call to the daemon's local API; the daemon does the work.

func mapCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "map suggest|check|publish ...",
		Short: "Propose, test and publish a mapping of a dataset's layout to a standard",
	}
	c.AddCommand(mapSuggestCmd(g), mapCheckCmd(g), mapPublishCmd(g))
	return c
}

func mapSuggestCmd(g *globals) *cobra.Command {
	var to, grant string
	c := &cobra.Command{
		Use:   "suggest ORG/NAME[@N] --to STANDARD",
		Short: "Propose a mapping (TOML, on standard output) from the file's headers and values",
		Long: `nii map suggest reads a version of a dataset (pulling it if this node does not
hold it) and proposes a mapping to the standard: header matches, date and
money formats found in the values, and comments saying which fields it could
not map and which columns it left unused. Edit it, try it with 'nii map check',
then publish it with 'nii map publish'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := nii.ParseRef(args[0])
			if err != nil {
				return err
			}
			std, err := nii.ParseRef(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			tok, err := readGrant(grant)
			if err != nil {
				return err
			}
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			s, err := cl.Suggest(cmd.Context(), api.SuggestRequest{Ref: ref.String(), Standard: std.String(), Grant: tok})
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), s)
			}
			fmt.Fprint(cmd.OutOrStdout(), s.TOML)
			fmt.Fprintf(cmd.ErrOrStderr(), "suggested a mapping of %s to %s: %d fields mapped", s.Ref, s.Standard, len(s.Fields))
			if len(s.Unmapped) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), ", not mapped: %s", strings.Join(s.Unmapped, ", "))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "\ncheck it with: nii map check %s FILE\n", s.Ref)
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the standard to map to (ORG/NAME[@N])")
	c.Flags().StringVar(&grant, "grant", "", "access grant for a restricted dataset: the token, or @FILE")
	c.MarkFlagRequired("to")
	addJSON(c, g)
	return c
}

// readMapping reads a mapping file, refusing one that is not a regular
// file.
func readMapping(path string) (string, error) {
	f, err := openRegular(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(b), nil
}

func mapCheckCmd(g *globals) *cobra.Command {
	var grant string
	c := &cobra.Command{
		Use:   "check ORG/NAME[@N] FILE",
		Short: "Apply a mapping to a version: rows accepted and rejected, each rule with line numbers",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := nii.ParseRef(args[0])
			if err != nil {
				return err
			}
			m, err := readMapping(args[1])
			if err != nil {
				return err
			}
			tok, err := readGrant(grant)
			if err != nil {
				return err
			}
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			rep, err := cl.Check(cmd.Context(), api.CheckRequest{Ref: ref.String(), Mapping: m, Grant: tok})
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			return printCheck(cmd.OutOrStdout(), rep)
		},
	}
	c.Flags().StringVar(&grant, "grant", "", "access grant for a restricted dataset: the token, or @FILE")
	addJSON(c, g)
	return c
}

func printCheck(out io.Writer, r *api.CheckReport) error {
	pct := func(n int64) string {
		if r.DataRows == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(r.DataRows))
	}
	fmt.Fprintf(out, "%s mapped to %s (mapping %s)\n", r.Ref, r.Standard, r.Mapping.String()[:12])
	fmt.Fprintf(out, "  header     record %d (line %d), %d preamble records above it\n", r.HeaderRecord, r.HeaderLine, r.Preamble)
	fmt.Fprintf(out, "  data rows  %d: %d accepted (%s), %d rejected (%s)\n", r.DataRows, r.Accepted, pct(r.Accepted), r.Rejected, pct(r.Rejected))
	if r.Blank+r.Footer+r.Repaired > 0 {
		fmt.Fprintf(out, "  also       %d blank, %d footer lines, %d rows repaired\n", r.Blank, r.Footer, r.Repaired)
	}
	if len(r.Failures) > 0 {
		w := tabw(out)
		fmt.Fprintln(w, "\nRULE\tFIELD\tROWS\tLINES\tEXAMPLE")
		for _, f := range r.Failures {
			lines := make([]string, len(f.Lines))
			for i, l := range f.Lines {
				lines[i] = fmt.Sprint(l)
			}
			ex := ""
			if len(f.Examples) > 0 {
				ex = f.Examples[0]
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", f.Rule, orDash(f.Field), f.Rows, strings.Join(lines, ","), ex)
		}
		w.Flush()
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(out, "\nwarning: %s\n", wn)
	}
	return nil
}

func mapPublishCmd(g *globals) *cobra.Command {
	var name, title, licence string
	c := &cobra.Command{
		Use:   "publish ORG/NAME FILE [--name NAME]",
		Short: "Publish a mapping for a dataset: signed, gossiped, cited by every merge that uses it",
		Long: `nii map publish checks a mapping (it parses, its standard is known and it fits,
it applies to the dataset, and every column it names is in the dataset's
newest version) and publishes it as a dataset of this node's org, named
NAME--map--STDORG-STDNAME for a dataset this node publishes and
ORG-NAME--map--STDORG-STDNAME for another's (a harmoniser's mapping). Its
applies_to patterns carry it to the dataset's later versions.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := nii.ParseDatasetID(args[0])
			if err != nil {
				return err
			}
			m, err := readMapping(args[1])
			if err != nil {
				return err
			}
			if name != "" {
				if err := nii.CheckSlug("--name", name); err != nil {
					return err
				}
			}
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			res, err := cl.PublishMapping(cmd.Context(), api.MappingPublishRequest{Dataset: d.String(), Mapping: m, Name: name, Title: title, Licence: licence})
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "published mapping %s for %s (to %s), manifest %s\n", res.Version.Ref, d, res.Version.Meta.ConformsTo, res.Version.Manifest)
			if r := res.Check; r != nil {
				fmt.Fprintf(out, "  checked against %s: %d of %d data rows accepted, %d rejected\n", r.Ref, r.Accepted, r.DataRows, r.Rejected)
				for _, wn := range r.Warnings {
					fmt.Fprintf(out, "  warning: %s\n", wn)
				}
			} else if res.CheckNote != "" {
				fmt.Fprintf(out, "  %s\n", res.CheckNote)
			}
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "the mapping dataset's name (default NAME--map--STDORG-STDNAME)")
	c.Flags().StringVar(&title, "title", "", "title (default the mapping's own)")
	c.Flags().StringVar(&licence, "licence", "", "licence ID of the mapping, e.g. OGL-UK-3.0")
	addJSON(c, g)
	return c
}

func standardsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "standards [show STANDARD]",
		Short: "Standards known to the federation, who conforms, with which mapping and whose",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fetchAndPrint(cmd, g, (*api.Client).Standards, printStandards)
		},
	}
	c.AddCommand(standardsShowCmd(g))
	addJSON(c, g)
	return c
}

func choiceWord(s api.StandardSource) string {
	switch s.Choice {
	case api.ChoicePublisher, api.ChoiceHarmoniser:
		return fmt.Sprintf("%s (%s)", s.Mapping.Ref, s.Choice)
	case api.ChoiceIdentity:
		return "none needed: conforms directly"
	}
	return "not merged: " + s.Why
}

func printStandards(out io.Writer, stds []api.StandardInfo) error {
	if len(stds) == 0 {
		fmt.Fprintln(out, "no standards in the federation yet: publish one with 'nii publish SCHEMA.json --name NAME --standard'")
		return nil
	}
	for i, s := range stds {
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "%s  %s (%d sources, %d mappings)\n", s.Ref, s.Title, len(s.Sources), s.Mappings)
		w := tabw(out)
		if len(s.Sources) > 0 {
			fmt.Fprintln(w, "  DATASET\tVERSION\tACCESS\tMAPPING")
		}
		for _, src := range s.Sources {
			fmt.Fprintf(w, "  %s\t@%d\t%s\t%s\n", src.Dataset, src.Version, src.Access, choiceWord(src))
		}
		w.Flush()
		for _, wt := range s.Watches {
			fmt.Fprintf(out, "  kept current here: %s@%d (%s)\n", wt.Publish, wt.Version, wt.State)
		}
	}
	return nil
}

func standardsShowCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "show ORG/NAME[@N]",
		Short: "A standard's fields, who conforms, and its fitness: publisher × month coverage, each source's score",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := nii.ParseRef(args[0])
			if err != nil {
				return err
			}
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			d, err := cl.Standard(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), d)
			}
			return printStandard(cmd.OutOrStdout(), d)
		},
	}
	addJSON(c, g)
	return c
}

func printStandard(out io.Writer, d *api.StandardDetail) error {
	fmt.Fprintf(out, "%s  %s\n", d.Ref, d.Title)
	if d.Description != "" {
		fmt.Fprintf(out, "%s\n", d.Description)
	}
	w := tabw(out)
	fmt.Fprintln(w, "\nFIELD\tTYPE\tREQUIRED\tROLE\tTITLE")
	for _, f := range d.Fields {
		typ := f.Type
		if f.Format != "" {
			typ += " " + f.Format
		}
		if len(f.Enum) > 0 {
			typ += " (" + strings.Join(f.Enum, "|") + ")"
		}
		req := ""
		if f.Required {
			req = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", f.Name, typ, req, f.Role, f.Title)
	}
	w.Flush()
	fmt.Fprintln(out)
	printStandards(out, []api.StandardInfo{d.StandardInfo})
	fit := d.Fitness
	if fit == nil {
		if d.FitnessNote != "" {
			fmt.Fprintf(out, "\nfitness: %s\n", d.FitnessNote)
		}
		return nil
	}
	w = tabw(out)
	fmt.Fprintln(w, "\nSOURCE\tVERSION\tDATA ROWS\tACCEPTED\tREJECTED\tSCORE\tTOP REJECT RULES")
	for _, s := range fit.Sources {
		var rules []string
		for _, r := range s.TopFailures {
			rules = append(rules, fmt.Sprintf("%s/%s %d", r.Rule, orDash(r.Field), r.Rows))
		}
		fmt.Fprintf(w, "%s\t@%d\t%d\t%d\t%d\t%.1f%%\t%s\n", s.Dataset, s.Version, s.DataRows, s.Accepted, s.Rejected, 100*s.Score, strings.Join(rules, ", "))
	}
	w.Flush()
	printCoverage(out, fit.Coverage)
	for _, m := range fit.Missing {
		fmt.Fprintf(out, "missing: %s@%d: %s\n", m.Dataset, m.Version, m.Reason)
	}
	return nil
}

// printCoverage prints the coverage matrix: a row per month, a column per
// publisher, each cell "rows reject%"; a gap shows as "-". A last line
// gives each publisher's total amount.
func printCoverage(out io.Writer, cells []api.CoverageCell) {
	if len(cells) == 0 {
		return
	}
	monthSet := map[string]bool{}
	byPub := map[string]map[string]api.CoverageCell{}
	var pubs []string
	for _, c := range cells {
		monthSet[c.Month] = true
		if byPub[c.Publisher] == nil {
			byPub[c.Publisher] = map[string]api.CoverageCell{}
			pubs = append(pubs, c.Publisher)
		}
		byPub[c.Publisher][c.Month] = c
	}
	var months []string
	for m := range monthSet {
		months = append(months, m)
	}
	sort.Strings(months)
	w := tabw(out)
	fmt.Fprint(w, "\nMONTH (rows, reject rate)")
	for _, p := range pubs {
		fmt.Fprintf(w, "\t%s", p)
	}
	fmt.Fprintln(w)
	for _, m := range months {
		label := m
		if m == "" {
			label = "no date"
		}
		fmt.Fprint(w, label)
		for _, p := range pubs {
			c, ok := byPub[p][m]
			if !ok {
				fmt.Fprint(w, "\t-")
				continue
			}
			fmt.Fprintf(w, "\t%d %.0f%%", c.Rows, 100*c.RejectRate)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "total £")
	for _, p := range pubs {
		var sum int64 // pence
		for _, c := range byPub[p] {
			sum += pence(c.Amount)
		}
		fmt.Fprintf(w, "\t%s", humanize.CommafWithDigits(float64(sum)/100, 2))
	}
	fmt.Fprintln(w)
	w.Flush()
}

// pence reads an exact decimal amount ("-1234.5678") as whole pence.
func pence(s string) int64 {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	frac = (frac + "00")[:2]
	var n int64
	for _, r := range whole + frac {
		n = n*10 + int64(r-'0')
	}
	if neg {
		return -n
	}
	return n
}

func mergeCmd(g *globals) *cobra.Command {
	var (
		output, format, rejects, publish, title string
		grants                                  []string
		bom, partial, watch                     bool
	)
	c := &cobra.Command{
		Use:   "merge STANDARD [-o FILE] [--format csv|parquet|ndjson] [--publish ORG/NAME [--watch]]",
		Short: "Merge every dataset that conforms to a standard: pulled, mapped, validated, with provenance",
		Long: `nii merge finds every dataset in the federated catalog that conforms to the
standard or has a mapping to it (the publisher's own, else a trusted
harmoniser's), pulls the versions it may read (open ones, and restricted ones
for which --grant gives a grant), applies each one's mapping, validates every
row, and writes one table: the standard's fields, a normalised supplier, and
for every row its publisher, dataset, version, source manifest, source line
and mapping. Rejected rows go to --rejects with their line and reason.

-o writes the table (the format from --format, else the file's extension);
--publish publishes it as a dataset of this node whose manifest records the
lineage, and --watch keeps that dataset current as sources change. A source
that cannot be read fails the merge with the list, unless --allow-partial.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			std, err := nii.ParseRef(args[0])
			if err != nil {
				return err
			}
			if watch && publish == "" {
				return errors.New("--watch keeps a published merge current: give --publish ORG/NAME too")
			}
			if output != "" && format == "" {
				format = formatOf(output)
			}
			switch format {
			case "", api.FormatCSV, api.FormatParquet, api.FormatNDJSON:
			default:
				return fmt.Errorf("--format %q: want csv, parquet or ndjson", format)
			}
			if format == "" {
				format = api.FormatCSV
			}
			req := api.MergeRequest{Standard: std.String(), AllowPartial: partial, Publish: publish, Title: title, Watch: watch}
			for _, gr := range grants {
				tok, err := readGrant(gr)
				if err != nil {
					return err
				}
				req.Grants = append(req.Grants, tok)
			}
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			res, err := cl.Merge(cmd.Context(), req)
			if err != nil {
				return err
			}
			// The summary goes to stderr when the table goes to stdout.
			sum := cmd.OutOrStdout()
			if output == "-" {
				sum = cmd.ErrOrStderr()
			}
			if g.json {
				if err := printJSON(sum, res); err != nil {
					return err
				}
			} else {
				printMerge(sum, res)
			}
			if output != "" {
				if err := writeMerged(cmd, cl, res.ID, output, format, bom, false); err != nil {
					return err
				}
			}
			if rejects != "" {
				if err := writeMerged(cmd, cl, res.ID, rejects, api.FormatCSV, bom, true); err != nil {
					return err
				}
			}
			if output == "" && publish == "" && !g.json {
				fmt.Fprintf(sum, "(nothing written: give -o FILE for the table, or --publish ORG/NAME)\n")
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&output, "output", "o", "", "write the merged table to FILE (- for standard output)")
	f.StringVar(&format, "format", "", "csv, parquet or ndjson (default: from the file's extension, else csv)")
	f.BoolVar(&bom, "bom", false, "start CSV with a UTF-8 byte-order mark, so Excel reads it as UTF-8")
	f.StringVar(&rejects, "rejects", "", "write the rejected rows (CSV: source, line, rule, field, reasons, raw cells) to FILE")
	f.StringVar(&publish, "publish", "", "publish the merged table as ORG/NAME (this node's org), its lineage in the manifest")
	f.StringVar(&title, "title", "", "the published dataset's title")
	f.BoolVar(&watch, "watch", false, "keep the published dataset current: merge and publish again whenever an input changes")
	f.BoolVar(&partial, "allow-partial", false, "merge what can be read; the output and lineage list the sources left out")
	f.StringArrayVar(&grants, "grant", nil, "access grant for restricted sources: the token, or @FILE (repeatable)")
	addJSON(c, g)
	return c
}

func formatOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet":
		return api.FormatParquet
	case ".ndjson", ".jsonl":
		return api.FormatNDJSON
	}
	return api.FormatCSV
}

func writeMerged(cmd *cobra.Command, cl *api.Client, id, path, format string, bom, rejects bool) error {
	if path == "-" {
		_, err := cl.MergeTable(cmd.Context(), id, format, bom, rejects, cmd.OutOrStdout())
		return err
	}
	var n int64
	err := node.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		var err error
		n, err = cl.MergeTable(cmd.Context(), id, format, bom, rejects, w)
		return err
	})
	if err != nil {
		return err
	}
	what := "merged table"
	if rejects {
		what = "rejected rows"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "wrote the %s to %s (%s, %s)\n", what, path, format, humanize.IBytes(uint64(n)))
	return nil
}

func printMerge(out io.Writer, r *api.MergeResult) {
	cached := 0
	for _, s := range r.Sources {
		if s.FromCache {
			cached++
		}
	}
	fmt.Fprintf(out, "merged %s: %d rows from %d sources, %d rejected (%d sources mapped, %d from the cache) in %s\n",
		r.Standard, r.Rows, len(r.Sources), r.Rejected, r.Remapped, cached, r.Took)
	w := tabw(out)
	fmt.Fprintln(w, "SOURCE\tVERSION\tMAPPING\tCHOICE\tACCEPTED\tREJECTED")
	for _, s := range r.Sources {
		fmt.Fprintf(w, "%s\t@%d\t%s\t%s\t%d\t%d\n", s.Dataset, s.Version, orDash(s.Mapping), s.Choice, s.Accepted, s.Rejected)
	}
	w.Flush()
	for _, m := range r.Missing {
		fmt.Fprintf(out, "missing: %s@%d: %s\n", m.Dataset, m.Version, m.Reason)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(out, "not merged: %s: %s\n", s.Dataset, s.Reason)
	}
	if p := r.Published; p != nil {
		if r.Unchanged {
			fmt.Fprintf(out, "%s is current: nothing it was built from has changed\n", p.Ref)
		} else {
			fmt.Fprintf(out, "published %s (%s); its lineage: nii show %s --lineage\n", p.Ref, humanize.IBytes(uint64(p.Size)), p.Ref)
		}
	}
	if wt := r.Watch; wt != nil {
		fmt.Fprintf(out, "keeping %s current: it is merged and published again whenever a source, a mapping or the standard changes\n", wt.Publish)
	}
}

// printLineage prints a lineage report; it returns an error (and so a
// non-zero exit) if any cite did not check out.
func printLineage(out io.Writer, r *api.LineageReport) error {
	mark := func(c *api.CiteCheck) string {
		s := c.Status
		if c.Status == api.LineageOK {
			s = "ok"
			if c.Org != "" {
				s += ", signed by " + c.Org
			} else if c.Signer != "" {
				s += ", signed by node " + c.Signer.Short()
			}
		} else if c.Detail != "" {
			s += ": " + c.Detail
		}
		return s
	}
	short := func(h nii.Hash) string { return h.String()[:12] }
	fmt.Fprintf(out, "%s  manifest %s  %s\n", r.Merged.Ref, short(r.Merged.Manifest), mark(&r.Merged))
	fmt.Fprintf(out, "standard  %s  manifest %s  %s\n", r.Standard.Ref, short(r.Standard.Manifest), mark(&r.Standard))
	w := tabw(out)
	fmt.Fprintln(w, "\nSOURCE\tMANIFEST\tCHECK\tMAPPING\tCHECK\tACCEPTED\tREJECTED")
	for _, in := range r.Inputs {
		mref, mman, mchk := "identity", "-", "-"
		if m := in.Mapping; m != nil {
			mref, mman, mchk = m.Ref, short(m.Manifest), mark(m)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s %s\t%s\t%d\t%d\n", in.Source.Ref, short(in.Source.Manifest), mark(&in.Source), mref, mman, mchk, in.Accepted, in.Rejected)
	}
	w.Flush()
	for _, m := range r.Missing {
		fmt.Fprintf(out, "missing from the merge: %s@%d: %s\n", m.Dataset, m.Version, m.Reason)
	}
	if !r.OK {
		return fmt.Errorf("lineage of %s: %d cite(s) did not check out (see above)", r.Merged.Ref, r.Problems)
	}
	fmt.Fprintf(out, "\nevery cite checked out: each manifest is signed by its publisher and hashes to what the lineage cites\n")
	return nil
}

// checkLineage is nii show --lineage.
func checkLineage(cmd *cobra.Command, g *globals, cl *api.Client, ref nii.Ref) error {
	r, err := cl.Lineage(cmd.Context(), ref)
	if err != nil {
		return err
	}
	if g.json {
		if err := printJSON(cmd.OutOrStdout(), r); err != nil {
			return err
		}
		if !r.OK {
			return fmt.Errorf("lineage of %s: %d cite(s) did not check out", r.Merged.Ref, r.Problems)
		}
		return nil
	}
	return printLineage(cmd.OutOrStdout(), r)
}
