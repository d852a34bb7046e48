package main

import (
	"context"
	"crypto/ed25519"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node"
	"github.com/spf13/cobra"
)

// The demo's sample data: small real and synthetic council files in
// different layouts. demodata/README.md says where each came from.
//
//go:embed demodata/*.csv demodata/mappings/*.toml
var demoFiles embed.FS

// demoDataset is one sample file and what the demo publishes it as.
type demoDataset struct {
	file, name, title, description string
	keywords, themes               []string
	restricted                     bool // needs a grant: shows the trust model
}

// demoBorough is one publishing node of the demo federation.
type demoBorough struct {
	org, name string
	datasets  []demoDataset
}

const (
	demoFederation = "demo"
	demoRegistry   = "registry"
	demoLicence    = "OGL-UK-3.0"
	synthetic      = " Synthetic sample made up for the nii demo: no row is real."
)

var demoBoroughs = []demoBorough{
	{"greenwich", "Royal Borough of Greenwich", []demoDataset{
		{"greenwich-spend.csv", "spend", "Spend over £500, April 2024",
			"Payments to suppliers over £500. ISO dates, credits in brackets." + synthetic,
			[]string{"spend", "transparency", "payments"}, []string{"finance"}, false},
		{"greenwich-planning-applications.csv", "planning-applications", "Planning applications received, spring 2024",
			"Planning applications with their status and decision. Restricted in the demo, to show grants." + synthetic,
			[]string{"planning", "applications"}, []string{"planning"}, true},
	}},
	{"lambeth", "London Borough of Lambeth", []demoDataset{
		{"lambeth-spend.csv", "spend", "Invoices over £500, June 2012",
			"Lambeth's invoices over the specified nett amount, June 2012 (first 250 rows). Real data: contains public sector information licensed under the Open Government Licence v3.0.",
			[]string{"spend", "transparency", "invoices"}, []string{"finance"}, false},
	}},
	{"camden", "London Borough of Camden", []demoDataset{
		{"camden-spend.csv", "spend", "Payments over £500, May 2024",
			"Payments to suppliers over £500 with net, VAT and gross amounts." + synthetic,
			[]string{"spend", "transparency", "payments"}, []string{"finance"}, false},
		{"camden-air-quality.csv", "air-quality", "Air quality sensor readings, June 2024",
			"Hourly NO2, PM2.5 and PM10 readings from three roadside and background sensors." + synthetic,
			[]string{"air quality", "sensors", "no2", "pm2.5"}, []string{"environment"}, false},
	}},
	{"trafford", "Trafford Council", []demoDataset{
		{"trafford-spend.csv", "spend", "Expenditure over £500, September 2014",
			"Trafford Council's expenditure over £500, September 2014 (first 160 rows), in the DCLG/LGA layout. Real data: contains public sector information licensed under the Open Government Licence v3.0.",
			[]string{"spend", "transparency", "expenditure"}, []string{"finance"}, false},
	}},
	// The harmonisation step (demoHarmony): lga publishes the spend
	// standard, gla keeps the merged view of every borough's spend current.
	{demoStandardOrg, "Local Government Association", nil},
	{demoMergerOrg, "Greater London Authority", nil},
}

// DemoNode describes one node of the demo federation.
type DemoNode struct {
	Org          string   `json:"org"`
	Name         string   `json:"name"`
	Home         string   `json:"home"`
	API          string   `json:"api"`
	Gossip       string   `json:"gossip"`
	P2P          []string `json:"p2p"`
	RegistryOnly bool     `json:"registry_only,omitempty"`
	Datasets     []string `json:"datasets,omitempty"`
	Verified     bool     `json:"verified,omitempty"` // enrolled with the demo admin's credential
}

// DemoInfo is what 'nii demo --json' prints, on one line, once the
// registry lists every sample dataset.
type DemoInfo struct {
	Dir        string     `json:"dir"`
	Kept       bool       `json:"kept"` // --dir was given: the homes stay after exit
	Federation string     `json:"federation"`
	Registry   DemoNode   `json:"registry"`
	Nodes      []DemoNode `json:"nodes"`
	Datasets   []string   `json:"datasets"`
	Restricted []string   `json:"restricted"` // datasets that need a grant
	// AdminKey is the demo federation admin's issuer key: every node
	// trusts it, every borough is enrolled with it, and it issues grants.
	AdminKey string `json:"admin_key"`
	// Standard is the spend standard the boroughs' mappings map to;
	// Mappings are those mappings; Merged is the merged view of them that
	// gla keeps current.
	Standard string   `json:"standard"`
	Mappings []string `json:"mappings"`
	Merged   string   `json:"merged"`
}

func demoCmd(g *globals) *cobra.Command {
	var (
		dir     string
		level   string
		timeout time.Duration
	)
	c := &cobra.Command{
		Use:   "demo [--dir DIR]",
		Short: "Run a small local federation with sample data, to look at",
		Long: `nii demo starts a federation on this machine: four borough nodes, a
standards body (lga), the GLA and a registry-only node, on loopback with free
ports, each with its own home. Each borough publishes sample files (spend over
£500 in four layouts, planning applications, air-quality sensor readings); lga
publishes the LGA spend standard, each borough a mapping of its spend file to
it, and the GLA keeps the merged view of all four current. Once the federation
lists everything, demo prints the nodes' API URLs and commands to try, and
runs until Ctrl-C. The homes live in a temporary directory that is removed on
exit, unless --dir is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lv := new(slog.LevelVar)
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), demoOptions{
				dir: dir, json: g.json, timeout: timeout, log: log, level: lv,
			})
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "keep the nodes' homes under DIR (default: a temporary directory, removed on exit)")
	c.Flags().StringVar(&level, "log-level", "warn", "the nodes' log level: debug, info, warn, error")
	c.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for the federation to converge")
	addJSON(c, g)
	return c
}

type demoOptions struct {
	dir     string
	json    bool
	timeout time.Duration
	log     *slog.Logger
	level   *slog.LevelVar
}

// runDemo starts the demo federation, waits until the registry lists
// every dataset, prints how to use it, and serves until ctx ends.
func runDemo(ctx context.Context, out, errw io.Writer, o demoOptions) (err error) {
	dir, kept := o.dir, o.dir != ""
	if kept {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	} else if dir, err = os.MkdirTemp("", "nii-demo-"); err != nil {
		return err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	var nodes []*node.Node // the registry first
	defer func() {
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil // interrupted while starting: a clean stop
		}
		if cerr := closeAll(nodes); cerr != nil && err == nil {
			err = cerr
		}
		if !kept {
			if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
				err = rerr
			}
		}
		if err == nil {
			fmt.Fprintf(errw, "stopped %d nodes", len(nodes))
			if !kept {
				fmt.Fprintf(errw, " and removed %s", dir)
			}
			fmt.Fprintln(errw)
		}
	}()

	// A federation admin and a federation key: every node starts trusting
	// the demo's issuer key, with its gossip encrypted, so the demo runs
	// in the verified mode docs/security.md asks of a real federation.
	sec, err := demoSecurity(dir)
	if err != nil {
		return err
	}
	reg, err := startDemoNode(ctx, dir, demoRegistry, "Demo federation registry", nil, o.log, sec)
	if err != nil {
		return err
	}
	nodes = append(nodes, reg)
	join := []string{reg.GossipAddr()}
	for _, b := range demoBoroughs {
		n, err := startDemoNode(ctx, dir, b.org, b.name, join, o.log, sec)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	// Every borough is enrolled, so its adverts show as verified.
	if err := demoEnrol(sec.admin, nodes); err != nil {
		return err
	}
	// Publish once everyone is a member, so the adverts' first gossip
	// reaches the registry rather than waiting for anti-entropy.
	deadline := time.Now().Add(o.timeout)
	if err := awaitDemo(ctx, nodes, nil, deadline); err != nil {
		return err
	}
	var want []nii.DatasetID
	for i, b := range demoBoroughs {
		for _, d := range b.datasets {
			if err := publishSample(ctx, nodes[i+1], d); err != nil {
				return fmt.Errorf("%s: %w", b.org, err)
			}
			want = append(want, nii.DatasetID{Org: b.org, Name: d.name})
		}
	}
	if err := awaitDemo(ctx, nodes, want, deadline); err != nil {
		return err
	}
	if err := demoHarmony(ctx, nodes, deadline); err != nil {
		return err
	}

	info := demoInfo(dir, kept, nodes)
	if o.json {
		if err := json.NewEncoder(out).Encode(info); err != nil {
			return err
		}
	} else {
		printDemo(out, info)
	}
	<-ctx.Done()
	// A second Ctrl-C while the nodes close kills the process outright.
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	fmt.Fprintln(errw, "stopping the demo federation…")
	// Nodes that leave at once race memberlist's own shutdown into "use of
	// closed network connection" errors about each other; they mean
	// nothing here, and Close reports any error that does.
	if o.level.Level() <= slog.LevelError {
		o.level.Set(slog.LevelError + 1)
	}
	return nil
}

// startDemoNode creates (unless it exists) and starts one node's home
// under dir: loopback, free ports, small store caches, and the "local"
// gossip profile (one machine).
func startDemoNode(ctx context.Context, dir, org, name string, join []string, log *slog.Logger, sec demoSec) (*node.Node, error) {
	cfg := node.DefaultConfig(filepath.Join(dir, org))
	cfg.Org, cfg.OrgName, cfg.Federation = org, name, demoFederation
	cfg.API = "127.0.0.1:0"
	cfg.Gossip.Listen = "127.0.0.1:0"
	cfg.Gossip.Profile = "local"
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.LowMemory = true
	cfg.RegistryOnly = org == demoRegistry
	if _, err := os.Stat(filepath.Join(cfg.Home, node.ConfigFile)); errors.Is(err, os.ErrNotExist) {
		if _, err := node.Init(cfg); err != nil {
			return nil, err
		}
	}
	cfg.Gossip.Join = join
	cfg.Gossip.Keys = []string{sec.gossipKey}
	cfg.Trust = []node.TrustAnchor{sec.anchor}
	cfg.Logger = log.With(slog.String("org", org))
	n, err := node.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := n.Start(ctx); err != nil {
		return nil, fmt.Errorf("start %s: %w", org, err)
	}
	return n, nil
}

func demoAccess(d demoDataset) nii.Access {
	if d.restricted {
		return nii.AccessRestricted
	}
	return nii.AccessOpen
}

// The demo admin's issuer key and the federation's gossip key, in the
// demo's dir (0600), so a kept --dir restarts into the same federation.
const (
	demoAdminKeyFile  = "demo-admin.key"
	demoGossipKeyFile = "demo-gossip.key"
)

// demoSec is what every demo node starts with: the trust anchor of the
// demo admin's key and the federation's gossip key.
type demoSec struct {
	admin     ed25519.PrivateKey
	anchor    node.TrustAnchor
	gossipKey string
}

// demoSecurity makes (or, on a kept --dir, reloads) the demo admin's
// issuer key and the federation's gossip key.
func demoSecurity(dir string) (demoSec, error) {
	path := filepath.Join(dir, demoAdminKeyFile)
	key, err := auth.LoadPrivateKey(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, werr := auth.WriteKeyPair(path, "demo-admin")
		if werr != nil {
			return demoSec{}, werr
		}
		key = kp.Key
	} else if err != nil {
		return demoSec{}, err
	}
	pub := key.Public().(ed25519.PublicKey)
	sec := demoSec{admin: key, anchor: node.TrustAnchor{
		Name: "demo-admin", Key: base64.RawURLEncoding.EncodeToString(pub), KID: auth.KeyID(pub),
	}}
	gpath := filepath.Join(dir, demoGossipKeyFile)
	b, err := os.ReadFile(gpath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if sec.gossipKey, err = node.NewGossipKey(); err != nil {
			return demoSec{}, err
		}
		if err := os.WriteFile(gpath, []byte(sec.gossipKey+"\n"), 0o600); err != nil {
			return demoSec{}, err
		}
	case err != nil:
		return demoSec{}, err
	default:
		sec.gossipKey = strings.TrimSpace(string(b))
	}
	return sec, nil
}

// demoEnrol issues every borough its credential from the demo admin's
// key, so the registry lists its adverts as verified.
func demoEnrol(key ed25519.PrivateKey, nodes []*node.Node) error {
	for _, n := range nodes {
		if n.Config().RegistryOnly {
			continue
		}
		cred, _, err := auth.IssueCredential(key, demoFederation, n.ID(), n.Config().Org, n.Config().OrgName, 365*24*time.Hour)
		if err != nil {
			return err
		}
		if _, err := n.InstallCredential(cred); err != nil {
			return fmt.Errorf("%s: enrol: %w", n.Config().Org, err)
		}
	}
	return nil
}

// publishSample publishes one embedded file, unless the node already holds
// the dataset (a demo rerun on the same --dir).
func publishSample(ctx context.Context, n *node.Node, d demoDataset) error {
	id := nii.DatasetID{Org: n.Config().Org, Name: d.name}
	if _, err := n.Store().Latest(id); err == nil {
		return nil
	} else if !errors.Is(err, nii.ErrNotFound) {
		return err
	}
	f, err := demoFiles.Open(path.Join("demodata", d.file))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = n.Publish(ctx, f, node.PublishRequest{
		Name:     d.name,
		Filename: d.file,
		Meta: nii.Metadata{
			Title: d.title, Description: d.description, Licence: demoLicence,
			Keywords: d.keywords, Themes: d.themes, Access: demoAccess(d),
		},
	})
	return err
}

// awaitDemo polls, with a deadline, until every node sees every member and
// lists every dataset in want.
func awaitDemo(ctx context.Context, nodes []*node.Node, want []nii.DatasetID, deadline time.Time) error {
	for {
		missing := demoMissing(nodes, want)
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo federation did not converge in time: %s (try a longer --timeout on a busy machine)", missing)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// demoMissing says what the federation still lacks, or "" when it is ready.
func demoMissing(nodes []*node.Node, want []nii.DatasetID) string {
	for _, n := range nodes {
		st, err := n.Status()
		if err != nil {
			return err.Error()
		}
		if st.Members != len(nodes) {
			return fmt.Sprintf("%s sees %d of %d members", n.Config().Org, st.Members, len(nodes))
		}
	}
	// Every node, not only the registry: the commands the demo prints run
	// against the boroughs' homes too.
	for _, n := range nodes {
		for _, d := range want {
			if _, err := n.LookupDataset(d); err != nil {
				return fmt.Sprintf("%s does not list %s yet", n.Config().Org, d)
			}
		}
	}
	return ""
}

// closeAll closes the nodes concurrently: each leaves the federation
// politely, which takes a few gossip rounds.
func closeAll(nodes []*node.Node) error {
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(nodes))
	)
	for i, n := range nodes {
		wg.Go(func() {
			if err := n.Close(); err != nil {
				errs[i] = fmt.Errorf("close %s: %w", n.Config().Org, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func demoInfo(dir string, kept bool, nodes []*node.Node) DemoInfo {
	info := DemoInfo{Dir: dir, Kept: kept, Federation: demoFederation, Datasets: []string{}, Restricted: []string{},
		AdminKey: filepath.Join(dir, demoAdminKeyFile), Standard: demoStandard.String(),
		Merged: nii.DatasetID{Org: demoMergerOrg, Name: demoMergedName}.String()}
	for _, m := range demoMappings() {
		info.Mappings = append(info.Mappings, m.String())
	}
	for i, n := range nodes {
		cfg := n.Config()
		dn := DemoNode{Org: cfg.Org, Name: cfg.OrgName, Home: cfg.Home, API: n.APIAddr(), Gossip: n.GossipAddr(),
			P2P: n.P2PAddrs(), RegistryOnly: cfg.RegistryOnly}
		if i == 0 {
			info.Registry = dn
			continue
		}
		for _, d := range demoBoroughs[i-1].datasets {
			id := cfg.Org + "/" + d.name
			dn.Datasets = append(dn.Datasets, id)
			info.Datasets = append(info.Datasets, id)
			if d.restricted {
				info.Restricted = append(info.Restricted, id)
			}
		}
		switch cfg.Org {
		case demoStandardOrg:
			dn.Datasets = append(dn.Datasets, info.Standard+" (the standard)")
		case demoMergerOrg:
			dn.Datasets = append(dn.Datasets, info.Merged+" (the merged view, kept current)")
		}
		dn.Verified = n.Credential() != ""
		info.Nodes = append(info.Nodes, dn)
	}
	return info
}

func demoNodeHome(info DemoInfo, org string) string {
	for _, n := range info.Nodes {
		if n.Org == org {
			return n.Home
		}
	}
	return ""
}

func printDemo(w io.Writer, info DemoInfo) {
	bin := "nii"
	if strings.ContainsRune(os.Args[0], filepath.Separator) {
		bin = os.Args[0]
	}
	reg := info.Registry
	fmt.Fprintf(w, "nii demo: a federation of %d nodes on this machine (federation %q), homes in %s\n\n",
		len(info.Nodes)+1, info.Federation, info.Dir)
	tw := tabw(w)
	fmt.Fprintln(tw, "NODE\tAPI\tHOME\tPUBLISHES")
	fmt.Fprintf(tw, "%s\t%s\t%s\t(registry-only: holds no data, indexes the federation)\n", reg.Org, reg.API, reg.Home)
	for _, n := range info.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Org, n.API, n.Home, strings.Join(n.Datasets, ", "))
	}
	tw.Flush()
	a, b := info.Nodes[0], info.Nodes[1]
	fmt.Fprintf(w, `
The registry lists all %d datasets. Open its pages in a browser:

  %s/                                   # the catalogue: search, facets, datasets, previews
  %s/standards                          # the standards, who conforms, the coverage heat map
  %s/federation                         # the members and what each holds

or try, in another terminal:

  curl -s '%s/api/v1/catalog?q=spend'                   # the federated catalog, searched
  curl -s '%s/api/3/action/package_search?q=spend'      # the same through the CKAN API
  curl -s '%s/catalog.jsonld'                           # the whole catalog as DCAT
  curl -s '%s/metrics'                                  # Prometheus metrics
  curl -s '%s/api/v1/datasets/%s/versions/latest/content'   # a publisher serves its file

  %s --home %s search spend
  %s --home %s show %s
  %s --home %s pull %s -o %s.csv      # verified pull; %s becomes a replica
  %s --home %s peers

Restricted data: %s needs a grant. Every node trusts the demo admin's
issuer key (%s) and every borough is enrolled with it, so its
adverts show as verified. Issue lambeth a grant and pull:

  %s grant issue --key %s --federation %s --to lambeth --datasets '%s' --actions read,sync --ttl 1h -o lambeth.jwt
  %s --home %s pull %s --grant @lambeth.jwt -o restricted.csv
  %s --home %s audit            # the publisher's record of who asked, allowed or refused, and why`, len(info.Datasets),
		reg.API, reg.API, reg.API,
		reg.API, reg.API, reg.API, reg.API, b.API, b.Datasets[0],
		bin, reg.Home,
		bin, a.Home, b.Datasets[0],
		bin, a.Home, b.Datasets[0], strings.ReplaceAll(b.Datasets[0], "/", "-"), a.Org,
		bin, a.Home,
		strings.Join(info.Restricted, ", "), info.AdminKey,
		bin, info.AdminKey, info.Federation, info.Restricted[0],
		bin, demoNodeHome(info, "lambeth"), info.Restricted[0],
		bin, demoNodeHome(info, strings.Split(info.Restricted[0], "/")[0]))
	printDemoHarmony(w, bin, info)
	fmt.Fprint(w, "\n\nCtrl-C stops every node")
	if info.Kept {
		fmt.Fprintf(w, "; the homes stay in %s.\n", info.Dir)
	} else {
		fmt.Fprintf(w, " and removes %s.\n", info.Dir)
	}
}
