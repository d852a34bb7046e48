package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

func initCmd(g *globals) *cobra.Command {
	cfg := node.DefaultConfig("")
	var gossipKey string
	c := &cobra.Command{
		Use:   "init --org ORG [--name NAME] [--federation ID] [--gossip-key new|KEY]",
		Short: "Create a node's home: config, node key",
		Long: `Creates a node's home: config.toml and the node key.

With --gossip-key new the node starts a keyed federation: a fresh gossip key
is made and printed, to be given (privately) to every other member, which
joins with --gossip-key KEY. Without it the federation's gossip is
unencrypted and open to anyone who can reach the gossip port: fine for a lab
or a demo, said loudly by 'nii status' and the log (docs/security.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Home = g.home
			newKey := false
			switch gossipKey {
			case "":
			case "new":
				k, err := node.NewGossipKey()
				if err != nil {
					return err
				}
				cfg.Gossip.Keys, newKey = []string{k}, true
			default:
				cfg.Gossip.Keys = []string{strings.TrimSpace(gossipKey)}
			}
			id, err := node.Init(cfg)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"home": g.home, "id": id, "org": cfg.Org, "federation": cfg.Federation,
					"gossip_key": gossipKeyIfNew(cfg, newKey), "gossip_encrypted": len(cfg.Gossip.Keys) > 0})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "initialised %s\n  node ID     %s\n  org         %s\n  federation  %s\n", g.home, id, cfg.Org, cfg.Federation)
			switch {
			case newKey:
				fmt.Fprintf(out, "  gossip key  %s\nGive this key, privately, to every member of %s; each joins with:\n  nii init --org ORG --federation %s --gossip-key %s\n",
					cfg.Gossip.Keys[0], cfg.Federation, cfg.Federation, cfg.Gossip.Keys[0])
			case len(cfg.Gossip.Keys) > 0:
				fmt.Fprintf(out, "  gossip      encrypted with the federation's key\n")
			default:
				fmt.Fprintf(out, "  gossip      UNENCRYPTED: anyone who can reach the gossip port can join %s and read its catalog\n              (start a keyed federation with --gossip-key new; docs/security.md)\n", cfg.Federation)
			}
			fmt.Fprintf(out, "start it with: nii run --home %s\n", g.home)
			return nil
		},
	}
	c.Flags().StringVar(&gossipKey, "gossip-key", "", "the federation's gossip key: new makes one (the first node), or the key another member was given")
	addJSON(c, g)
	c.Flags().StringVar(&cfg.Org, "org", "", "the publishing body this node speaks for (slug, e.g. greenwich)")
	c.Flags().StringVar(&cfg.OrgName, "name", "", "the org's display name")
	c.Flags().StringVar(&cfg.Federation, "federation", cfg.Federation, "the federation to belong to")
	c.Flags().StringVar(&cfg.API, "api", cfg.API, "local API listen address")
	c.MarkFlagRequired("org")
	return c
}

func runCmd(g *globals) *cobra.Command {
	var (
		api, gossip  string
		p2p, join    []string
		registryOnly bool
		level        string
		jsonLogs     bool
	)
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the node daemon until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := node.LoadConfig(g.home)
			if err != nil {
				return err
			}
			if api != "" {
				cfg.API = api
			}
			if gossip != "" {
				cfg.Gossip.Listen = gossip
			}
			if len(p2p) > 0 {
				cfg.P2P.Listen = p2p
			}
			cfg.Gossip.Join = append(cfg.Gossip.Join, join...)
			if registryOnly {
				cfg.RegistryOnly = true
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
			}
			hopts := &slog.HandlerOptions{Level: lv}
			if jsonLogs {
				cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
			} else {
				cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, hopts))
			}
			n, err := node.New(cfg)
			if err != nil {
				return err
			}
			clean, err := keepCrashReport(g.home)
			if err != nil {
				return err
			}
			defer clean()
			if err := n.Start(cmd.Context()); err != nil {
				return err
			}
			role := "node"
			if cfg.RegistryOnly {
				role = "registry-only node"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "nii %s %s (%s, federation %s)\n  api     %s\n  gossip  %s\n  p2p     %s\nCtrl-C stops it\n",
				role, n.ID(), cfg.Org, cfg.Federation, n.APIAddr(), n.GossipAddr(), strings.Join(n.P2PAddrs(), " "))
			return n.Run(cmd.Context())
		},
	}
	c.Flags().StringVar(&api, "api", "", "local API listen address (overrides the config)")
	c.Flags().StringVar(&gossip, "gossip", "", "gossip listen address host:port (overrides the config)")
	c.Flags().StringArrayVar(&p2p, "p2p", nil, "libp2p listen multiaddr (repeatable; overrides the config)")
	c.Flags().StringSliceVar(&join, "join", nil, "members to join, host:port[,host:port...] (added to the config's)")
	c.Flags().BoolVar(&registryOnly, "registry-only", false, "hold no data; only index the federation")
	c.Flags().StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	c.Flags().BoolVar(&jsonLogs, "log-json", false, "log as JSON lines")
	return c
}

// keepCrashReport has the Go runtime copy a fatal error's report (a panic,
// SIGBUS from a full disk under badger's memory maps) to HOME/crash.log
// as well as stderr, so that a CLI finding the daemon gone can say why.
// The file is emptied now and removed by the returned function when the
// daemon stops in good order.
func keepCrashReport(home string) (func(), error) {
	path := filepath.Join(home, node.CrashFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("crash report file: %w", err)
	}
	defer f.Close() // SetCrashOutput keeps its own descriptor
	if err := debug.SetCrashOutput(f, debug.CrashOptions{}); err != nil {
		return nil, fmt.Errorf("crash report file: %w", err)
	}
	return func() {
		debug.SetCrashOutput(nil, debug.CrashOptions{})
		os.Remove(path)
	}, nil
}

func statusCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the node's ID, org, federation, addresses and counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fetchAndPrint(cmd, g, (*api.Client).Status, func(out io.Writer, st *api.Status) error {
				return printStatus(out, st)
			})
		},
	}
	addJSON(c, g)
	return c
}

func printStatus(out io.Writer, st *api.Status) error {
	w := tabw(out)
	fmt.Fprintf(w, "node ID\t%s\n", st.ID)
	fmt.Fprintf(w, "org\t%s %s\n", st.Org, st.OrgName)
	fmt.Fprintf(w, "federation\t%s\n", st.Federation)
	mode := "verified: only publishers a membership credential proves are listed and pulled"
	if st.Security.Mode == api.ModeOpen {
		mode = "OPEN: no trust anchors, every org claim is unverified"
	}
	fmt.Fprintf(w, "mode\t%s (%d trust anchors)\n", mode, st.Security.Anchors)
	gossip := "encrypted (federation key)"
	if !st.Security.GossipEncrypted {
		gossip = "UNENCRYPTED"
	}
	fmt.Fprintf(w, "gossip\t%s\n", gossip)
	for _, k := range []string{"api", "gossip"} {
		if v, ok := st.Addresses[k]; ok {
			fmt.Fprintf(w, "%s address\t%s\n", k, v)
		}
	}
	for _, a := range st.P2PAddrs {
		fmt.Fprintf(w, "p2p address\t%s\n", a)
	}
	for _, warn := range st.Security.Warnings {
		fmt.Fprintf(w, "warning\t%s\n", warn)
	}
	fmt.Fprintf(w, "datasets\t%d (%d versions)\n", st.Store.Datasets, st.Store.Versions)
	fmt.Fprintf(w, "store\t%d chunks, %s\n", st.Store.Chunks, humanize.IBytes(uint64(st.Store.ChunkBytes)))
	if d := st.Disk; d.Total > 0 {
		state := ""
		switch {
		case d.ReadOnly:
			state = " — READ-ONLY: started below the floor; free space and restart"
		case d.Low:
			state = " — LOW: below the floor, publishes and pulls refused"
		}
		fmt.Fprintf(w, "disk\t%s free of %s, floor %s ([store] min_free)%s\n",
			humanize.IBytes(d.Free), humanize.IBytes(d.Total), humanize.IBytes(d.Floor), state)
	}
	fmt.Fprintf(w, "uptime\t%s\n", st.Uptime)
	h := st.History
	switch {
	case !h.Synced:
		fmt.Fprintf(w, "history\tnot yet heard from the federation: publishing waits until a member answers\n")
	case h.Adopted > 0 || h.Collisions > 0:
		fmt.Fprintf(w, "history\t%d own records learnt from the federation, %d collisions: this home was restored from a backup, or its key runs elsewhere (docs/operations.md)\n", h.Adopted, h.Collisions)
	}
	return w.Flush()
}

func publishCmd(g *globals) *cobra.Command {
	var (
		name     string
		req      api.PublishOptions
		access   string
		standard bool
		quiet    bool
	)
	c := &cobra.Command{
		Use:   "publish FILE --name NAME [--title T] [--licence L] [--keyword K]... [--json]",
		Short: "Publish a file as the next version of a dataset",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if err := nii.CheckSlug("dataset name", name); err != nil {
				return err
			}
			a, err := nii.ParseAccess(access)
			if err != nil {
				return err
			}
			if access != "" {
				req.Meta.Access = a
			}
			if standard {
				req.Meta.Kind = nii.KindStandard
			}
			f, err := openRegular(path)
			if err != nil {
				return err
			}
			defer f.Close()
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			st, err := cl.Status(cmd.Context())
			if err != nil {
				return err
			}
			req.Filename = filepath.Base(path)
			if fi, err := f.Stat(); err == nil {
				req.Size = fi.Size() // the node refuses up front what its disk cannot hold
			}
			var body io.Reader = f
			var bar *progressbar.ProgressBar
			if fi, err := f.Stat(); err == nil && !quiet && !g.json {
				bar = newBytesBar(cmd.ErrOrStderr(), fi.Size(), "publishing "+filepath.Base(path))
				body = io.TeeReader(f, bar)
			}
			v, err := cl.Publish(cmd.Context(), nii.DatasetID{Org: st.Org, Name: name}, body, req)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			if v.Meta.Licence == "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s has no licence: others cannot tell whether they may reuse it, and DCAT lists no dct:license (publish again with --licence, e.g. OGL-UK-3.0)\n", v.Ref)
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "published %s: %s, %d chunks, manifest %s\n",
				v.Ref, humanize.IBytes(uint64(v.Size)), v.Chunks, v.Manifest)
			if t := v.Meta.Table; t != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "  table: %d rows, %d columns\n", t.Rows, len(t.Columns))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", "dataset name (a slug); the org is the node's")
	f.StringVar(&req.Meta.Title, "title", "", "title (kept from the previous version if omitted)")
	f.StringVar(&req.Meta.Description, "description", "", "description")
	f.StringVar(&req.Meta.Licence, "licence", "", "licence: an SPDX ID (OGL-UK-3.0, CC-BY-4.0, …), a UK licence, or other:URL")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	addJSON(c, g)
	f.StringVar(&access, "access", "", "open or restricted (default: the previous version's, else open)")
	f.StringArrayVar(&req.Meta.Keywords, "keyword", nil, "keyword (repeatable)")
	f.StringArrayVar(&req.Meta.Themes, "theme", nil, "theme (repeatable)")
	f.StringVar(&req.Meta.ConformsTo, "conforms-to", "", "the standard the data conforms to (URI)")
	f.StringVar(&req.Meta.MediaType, "media-type", "", "media type (detected if omitted)")
	f.BoolVar(&standard, "standard", false, "publish FILE as a standard: a Frictionless Table Schema (JSON), checked before it is published")
	c.MarkFlagRequired("name")
	return c
}

// openRegular opens a file for reading, refusing directories and other
// non-regular files with a clear message.
func openRegular(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such file", path)
	}
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory: publish one file at a time", path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	return f, nil
}

func datasetsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "datasets",
		Short: "List this node's datasets and versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fetchAndPrint(cmd, g, (*api.Client).Datasets, printDatasets)
		},
	}
	addJSON(c, g)
	return c
}

func printDatasets(out io.Writer, ds []api.DatasetInfo) error {
	if len(ds) == 0 {
		fmt.Fprintln(out, "no datasets yet: publish one with 'nii publish FILE --name NAME'")
		return nil
	}
	w := tabw(out)
	fmt.Fprintln(w, "DATASET\tVERSION\tROLE\tSIZE\tROWS\tCOLUMNS\tMODIFIED\tTITLE")
	for _, d := range ds {
		if f := d.Follow; f != nil {
			// One row in the same columns: the version held of the one
			// advertised, the follow's state where the title goes.
			state := "following: " + f.State
			if f.LastError != "" {
				state += ": " + f.LastError
			}
			synced := "-"
			if !f.LastSync.IsZero() {
				synced = f.LastSync.Format("2006-01-02 15:04")
			}
			fmt.Fprintf(w, "%s\t@%d/@%d\t%s\t-\t-\t-\t%s\t%s\n", d.ID, f.Version, f.Advertised, orDash(d.Role), synced, state)
		}
		for _, v := range d.Versions {
			rows, cols := "-", "-"
			if t := v.Meta.Table; t != nil {
				rows, cols = fmt.Sprint(t.Rows), fmt.Sprint(len(t.Columns))
			}
			title := v.Meta.Title
			if v.Damaged != "" {
				title = "DAMAGED (" + v.Damaged + "; see 'nii store verify') " + title
			}
			fmt.Fprintf(w, "%s\t@%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, v.Version, d.Role, humanize.IBytes(uint64(v.Size)),
				rows, cols, v.Meta.Modified.Format("2006-01-02 15:04"), title)
		}
	}
	return w.Flush()
}

func showCmd(g *globals) *cobra.Command {
	var lineage, unverified bool
	c := &cobra.Command{
		Use:   "show ORG/NAME[@N] [--lineage] [--unverified]",
		Short: "Describe a dataset: with @N a version held here, else what the federation lists",
		Long: `nii show describes a dataset. With --lineage, for a merged dataset, it lists
every source version and mapping the version was built from and checks each:
the cited manifest is fetched (from this node's store or the federation), its
publisher's signature verified, and its hash compared with the cite. It exits
non-zero if any cite does not check out.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := nii.ParseRef(args[0])
			if err != nil {
				return err
			}
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			if lineage {
				return checkLineage(cmd, g, cl, ref)
			}
			return showRef(cmd, g, cl, ref, unverified)
		},
	}
	c.Flags().BoolVar(&lineage, "lineage", false, "for a merged dataset: list and verify every source and mapping it was built from")
	c.Flags().BoolVar(&unverified, "unverified", false, "show the dataset even if its only publisher claim is unverified")
	addJSON(c, g)
	return c
}

func printVersion(out io.Writer, v *api.VersionInfo) error {
	m := v.Meta
	w := tabw(out)
	fmt.Fprintf(w, "%s\t%s\n", v.Ref, m.Title)
	if m.Description != "" {
		fmt.Fprintf(w, "description\t%s\n", m.Description)
	}
	fmt.Fprintf(w, "publisher\t%s %s (node %s)\n", m.Publisher, m.PublisherName, v.Publisher)
	fmt.Fprintf(w, "licence\t%s\n", orDash(m.Licence))
	fmt.Fprintf(w, "access\t%s\n", m.Access)
	if len(m.Keywords) > 0 {
		fmt.Fprintf(w, "keywords\t%s\n", strings.Join(m.Keywords, ", "))
	}
	if len(m.Themes) > 0 {
		fmt.Fprintf(w, "themes\t%s\n", strings.Join(m.Themes, ", "))
	}
	if m.Kind != "" {
		fmt.Fprintf(w, "kind\t%s\n", m.Kind)
	}
	if m.ConformsTo != "" {
		fmt.Fprintf(w, "conforms to\t%s\n", m.ConformsTo)
	}
	if len(m.AppliesTo) > 0 {
		fmt.Fprintf(w, "applies to\t%s\n", strings.Join(m.AppliesTo, ", "))
	}
	fmt.Fprintf(w, "file\t%s (%s)\n", orDash(m.Filename), m.MediaType)
	fmt.Fprintf(w, "size\t%s (%d bytes) in %d chunks\n", humanize.IBytes(uint64(v.Size)), v.Size, v.Chunks)
	fmt.Fprintf(w, "issued\t%s\n", m.Issued.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "modified\t%s\n", m.Modified.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "manifest\t%s\n", v.Manifest)
	if t := m.Table; t != nil {
		fmt.Fprintf(w, "table\t%d rows, header on line %d, %s, %q-delimited\n", t.Rows, t.HeaderRow, t.Encoding, t.Delimiter)
		for _, c := range t.Columns {
			typ := c.Type
			if c.Format != "" {
				typ += " " + c.Format
			}
			fmt.Fprintf(w, "  %s\t%s\n", c.Name, typ)
		}
	}
	return w.Flush()
}

func exportCmd(g *globals) *cobra.Command {
	var (
		out, mode string
		noFsync   bool
	)
	c := &cobra.Command{
		Use:   "export ORG/NAME[@N] -o FILE [--json]",
		Short: "Write a stored version out to a file, verifying every chunk",
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
			if out == "-" {
				_, _, err := cl.Content(cmd.Context(), ref, cmd.OutOrStdout())
				return err
			}
			// The version first, so the file's mode follows its access and
			// "latest" cannot move between the two requests.
			v, err := cl.Version(cmd.Context(), ref)
			if err != nil {
				return err
			}
			perm, err := outputMode(v.Meta.Access, mode, cmd.Flags().Changed("mode"))
			if err != nil {
				return err
			}
			got, n, err := exportFile(cmd.Context(), cl, nii.Ref{Dataset: ref.Dataset, Version: v.Version}, out, perm, durability(noFsync))
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"ref": got, "file": out, "bytes": n})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s to %s (%s)\n", got, out, humanize.IBytes(uint64(n)))
			return nil
		},
	}
	addJSON(c, g)
	c.Flags().StringVarP(&out, "output", "o", "", "file to write (- for standard output)")
	c.MarkFlagRequired("output")
	addModeFlag(c, &mode)
	addNoFsyncFlag(c, &noFsync)
	return c
}

// addNoFsyncFlag adds --no-fsync, for a file written with -o.
func addNoFsyncFlag(c *cobra.Command, noFsync *bool) {
	c.Flags().BoolVar(noFsync, "no-fsync", false, "rename the file into place without fsyncing it first, as cp does: faster, but a power loss soon after may leave it empty or partial")
}

func durability(noFsync bool) node.Durability {
	if noFsync {
		return node.PageCache
	}
	return node.Durable
}

// exportFile writes version r to path atomically (node.FillFileAtomic:
// a temporary file, synced unless d is node.PageCache, renamed), with perm
// less the umask. The daemon
// fills the file itself through the export socket where it has one
// (node/api/export.go): no bytes cross the HTTP API. Where it has none
// (another platform, an older daemon) the bytes come over the HTTP API, as
// verified. Either way every chunk is checked against the signed manifest
// on the way out, and a failed export leaves no file.
func exportFile(ctx context.Context, cl *api.Client, r nii.Ref, path string, perm os.FileMode, d node.Durability) (string, int64, error) {
	var (
		got string
		n   int64
	)
	err := node.FillFileAtomic(path, perm, d, func(f *os.File) error {
		res, err := cl.ExportTo(ctx, r, f, d == node.PageCache)
		if err == nil {
			got, n = res.Ref, res.Size
			return nil
		}
		if !errors.Is(err, api.ErrNoFastPath) {
			return err
		}
		var w io.Writer = f
		if d == node.Durable {
			w = node.WriteBehind(f)
		}
		got, n, err = cl.Content(ctx, r, w)
		return err
	})
	return got, n, err
}

// addModeFlag adds --mode, the permission bits of a file written with -o.
func addModeFlag(c *cobra.Command, mode *string) {
	c.Flags().StringVar(mode, "mode", "", "permission bits of the file written, in octal, less the umask (default 0666 for open data, 0600 for restricted)")
}

// outputMode is the mode a dataset's file is created with (the umask
// applies, as for any file a program creates): 0666 for open data, 0600 for
// restricted data, or what --mode asks for.
func outputMode(access nii.Access, mode string, set bool) (os.FileMode, error) {
	if set {
		m, err := strconv.ParseUint(strings.TrimPrefix(mode, "0o"), 8, 32)
		if err != nil || m > 0o777 {
			return 0, fmt.Errorf("--mode %q: want permission bits in octal, e.g. 0640", mode)
		}
		return os.FileMode(m), nil
	}
	if access == nii.AccessRestricted {
		return 0o600, nil
	}
	return 0o666, nil
}

func versionCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print nii's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]string{"version": node.BuildVersion})
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "nii", node.BuildVersion)
			return err
		},
	}
	addJSON(c, g)
	return c
}

// withDataset parses arg as ORG/NAME, dials the node of g's home, and runs
// fn with both: the shape of every command that acts on one dataset.
func withDataset(cmd *cobra.Command, g *globals, arg string, fn func(*api.Client, nii.DatasetID) error) error {
	d, err := nii.ParseDatasetID(arg)
	if err != nil {
		return err
	}
	cl, err := api.Dial(g.home)
	if err != nil {
		return err
	}
	return fn(cl, d)
}

// fetchAndPrint dials the node of g's home, fetches one value, and prints
// it as JSON (--json) or with human.
func fetchAndPrint[T any](cmd *cobra.Command, g *globals, fetch func(*api.Client, context.Context) (T, error), human func(io.Writer, T) error) error {
	cl, err := api.Dial(g.home)
	if err != nil {
		return err
	}
	v, err := fetch(cl, cmd.Context())
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(cmd.OutOrStdout(), v)
	}
	return human(cmd.OutOrStdout(), v)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func tabw(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// gossipKeyIfNew is the gossip key init made, for --json ("" if it made none).
func gossipKeyIfNew(cfg node.Config, made bool) string {
	if made {
		return cfg.Gossip.Keys[0]
	}
	return ""
}
