package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/spf13/cobra"
)

// The admin commands: issuer keys, trust anchors, membership credentials,
// grants, revocations and the audit log. Minting (keygen, enrol, grant
// issue, grant revoke) needs only the issuer key file and can run on an
// admin's machine with no node; the rest talk to the node of --home.

func keygenCmd(g *globals) *cobra.Command {
	var out, name string
	c := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Create an issuer (federation admin) key pair",
		Long: `Creates an Ed25519 issuer key: FILE holds the private key (PEM PKCS#8, mode
0600; keep it offline), FILE with .pub instead of .key the public key as a JWK.
Give the .pub file to every node: nii trust add FILE.pub.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE is required (e.g. --out london-admin.key)")
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(out), filepath.Ext(out))
			}
			if dir := filepath.Dir(out); dir != "." {
				// A key kept in its own directory, made private to its owner.
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return fmt.Errorf("cannot create %s for the key: %w", dir, errors.Unwrap(err))
				}
			}
			kp, err := auth.WriteKeyPair(out, name)
			if err != nil {
				return err
			}
			pubPath, jwk := kp.PublicPath, kp.Public
			b, _ := json.MarshalIndent(jwk, "", "  ")
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"key": out, "public": pubPath, "kid": jwk.Kid, "jwk": jwk})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issuer key  %s (private: keep it offline)\npublic key  %s\nkey ID      %s\n%s\n", out, pubPath, jwk.Kid, b)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "where to write the private key (the public key goes beside it, .pub)")
	c.Flags().StringVar(&name, "name", "", "the issuer's name (default: the file's base name)")
	addJSON(c, g)
	return c
}

func trustCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "trust", Short: "Manage the issuer keys this node trusts"}
	var name string
	add := &cobra.Command{
		Use:   "add PUBKEYFILE",
		Short: "Trust an issuer key (a .pub JWK from nii keygen, or a PEM public key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			pub, jwkName, err := auth.ParsePublicKey(b)
			if err != nil {
				return err
			}
			if name == "" {
				name = jwkName
			}
			var info *api.TrustInfo
			if cl, err := api.Dial(g.home); err == nil {
				if info, err = cl.AddTrust(cmd.Context(), b, name); err != nil {
					return err
				}
			} else if errors.Is(err, api.ErrNotRunning) {
				// No daemon: the same config edit the daemon makes.
				if err := node.TrustIssuer(g.home, pub, name); err != nil {
					return err
				}
				info = &api.TrustInfo{KID: auth.KeyID(pub), Name: name}
			} else {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trusted %s (%s)\n", info.KID, orDash(info.Name))
			return nil
		},
	}
	add.Flags().StringVar(&name, "name", "", "a name for the issuer (default: the JWK's name)")
	addJSON(add, g)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the issuer keys this node trusts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fetchAndPrint(cmd, g, (*api.Client).Trust, func(w io.Writer, ts []api.TrustInfo) error {
				tw := tabw(w)
				fmt.Fprintln(tw, "KID\tNAME")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\n", t.KID, orDash(t.Name))
				}
				return tw.Flush()
			})
		},
	}
	addJSON(list, g)
	remove := &cobra.Command{
		Use:   "remove KID",
		Short: "Stop trusting an issuer key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := api.Dial(g.home)
			switch {
			case err == nil:
				if err := cl.RemoveTrust(cmd.Context(), args[0]); err != nil {
					return err
				}
			case errors.Is(err, api.ErrNotRunning): // no daemon: the same config edit the daemon makes
				found, err := node.UntrustIssuer(g.home, args[0])
				if err != nil {
					return err
				}
				if !found {
					return fmt.Errorf("issuer key %s is not among this node's trust anchors ('nii trust list')", args[0])
				}
			default:
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "no longer trusted: %s\n", args[0])
			return nil
		},
	}
	c.AddCommand(add, list, remove)
	return c
}

// federationOf returns the --federation flag, else the home's federation.
func federationOf(g *globals, flag string) (string, error) {
	if flag != "" {
		return flag, nii.CheckSlug("federation", flag)
	}
	cfg, err := node.LoadConfig(g.home)
	if err != nil {
		return "", fmt.Errorf("--federation is required (no node home at %s to take it from)", g.home)
	}
	return cfg.Federation, nil
}

// issuer loads the issuer key file and resolves the federation tokens are
// minted for: what every minting command starts with.
func issuer(g *globals, keyFile, fed string) (ed25519.PrivateKey, string, error) {
	k, err := auth.LoadPrivateKey(keyFile)
	if err != nil {
		return nil, "", err
	}
	fed, err = federationOf(g, fed)
	return k, fed, err
}

// writeToken writes a token to path (mode 0600) or, with no path, stdout.
func writeToken(cmd *cobra.Command, path, token string) error {
	if path == "" {
		fmt.Fprintln(cmd.OutOrStdout(), token)
		return nil
	}
	// Atomically, as a new file of mode 0600: never into an existing file
	// (which may be readable by others) or through a symlink.
	return node.WriteFileAtomic(path, 0o600, func(w io.Writer) error {
		_, err := io.WriteString(w, token+"\n")
		return err
	})
}

func enrolCmd(g *globals) *cobra.Command {
	var key, org, nodeID, name, fed, out string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "enrol --key FILE --org ORG --node NODEID [--name NAME]",
		Short: "Issue a membership credential binding a node to its org",
		Long: `Signs a membership credential: node NODEID publishes for ORG. Adverts carrying
it show as verified on every node that trusts the issuer. If --home is that
node, the credential is installed there; otherwise it is written to -o (or
printed) for the node's operator to install with 'nii credential install'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, fed, err := issuer(g, key, fed)
			if err != nil {
				return err
			}
			tok, cc, err := auth.IssueCredential(k, fed, nii.NodeID(nodeID), org, name, ttl)
			if err != nil {
				return err
			}
			if cfg, err := node.LoadConfig(g.home); err == nil && out == "" {
				if id, err := node.HomeNodeID(g.home); err == nil && id == nii.NodeID(nodeID) {
					if cfg.Org != org {
						return fmt.Errorf("node %s publishes for %q, not %q", id.Short(), cfg.Org, org)
					}
					return installCredential(cmd, g, tok)
				}
			}
			if g.json {
				if out != "" {
					if err := writeToken(cmd, out, tok); err != nil {
						return err
					}
				}
				return printJSON(cmd.OutOrStdout(), map[string]any{"id": cc.ID, "node": nodeID, "org": org, "expires": cc.ExpiresAt.UTC(), "file": out, "token": tok})
			}
			if err := writeToken(cmd, out, tok); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "credential %s: node %s is %s, until %s\n", cc.ID, nii.NodeID(nodeID).Short(), org, cc.ExpiresAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	addJSON(c, g)
	c.Flags().StringVar(&key, "key", "", "the issuer key file (from nii keygen)")
	c.Flags().StringVar(&org, "org", "", "the org the node publishes for")
	c.Flags().StringVar(&nodeID, "node", "", "the node's ID (nii status shows it)")
	c.Flags().StringVar(&name, "name", "", "the org's display name")
	c.Flags().StringVar(&fed, "federation", "", "the federation (default: the home's)")
	c.Flags().StringVarP(&out, "out", "o", "", "write the credential to this file instead of installing or printing it")
	c.Flags().DurationVar(&ttl, "ttl", 365*24*time.Hour, "how long the credential is valid")
	for _, f := range []string{"key", "org", "node"} {
		c.MarkFlagRequired(f)
	}
	return c
}

// installCredential installs a credential in the node of g's home: through
// its API if it runs (verified there), else as a file it reads at start.
func installCredential(cmd *cobra.Command, g *globals, tok string) error {
	cl, err := api.Dial(g.home)
	if errors.Is(err, api.ErrNotRunning) {
		if err := writeToken(cmd, filepath.Join(g.home, node.CredFile), tok); err != nil {
			return err
		}
		if g.json {
			return printJSON(cmd.OutOrStdout(), map[string]any{"installed": true, "file": filepath.Join(g.home, node.CredFile), "running": false})
		}
		fmt.Fprintln(cmd.OutOrStdout(), "credential saved; the node will carry it when it starts")
		return nil
	}
	if err != nil {
		return err
	}
	ci, err := cl.InstallCredential(cmd.Context(), tok)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(cmd.OutOrStdout(), ci)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "credential installed: this node is %s, until %s; its adverts now carry it\n", ci.Org, ci.Expires.Format(time.RFC3339))
	return nil
}

func credentialCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "credential",
		Short: "Show this node's membership credential",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fetchAndPrint(cmd, g, (*api.Client).Credential, func(w io.Writer, ci *api.CredentialInfo) error {
				if !ci.Installed {
					_, err := fmt.Fprintln(w, "no membership credential: this node's org claim shows as unverified (an admin runs nii enrol)")
					return err
				}
				valid := "valid"
				if !ci.Valid {
					valid = "NOT valid here (" + ci.Reason + ")"
				}
				_, err := fmt.Fprintf(w, "org      %s %s\nissuer   %s\nexpires  %s\nstatus   %s\n", ci.Org, ci.Name, ci.Issuer, ci.Expires.Format(time.RFC3339), valid)
				return err
			})
		},
	}
	addJSON(c, g)
	c.AddCommand(&cobra.Command{
		Use:   "install FILE|TOKEN",
		Short: "Install a membership credential from an admin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := readGrant("@" + args[0])
			if err != nil {
				tok = strings.TrimSpace(args[0])
			}
			return installCredential(cmd, g, tok)
		},
	})
	return c
}

func grantCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "grant", Short: "Issue, inspect and revoke access grants"}
	c.AddCommand(grantIssueCmd(g), grantInspectCmd(g), grantRevokeCmd(g))
	return c
}

func grantIssueCmd(g *globals) *cobra.Command {
	var key, to, datasets, actions, bind, fed, out string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "issue --key FILE --to ORG|NODEID --datasets PATTERN[,..] [--actions read[,sync]] [--ttl DURATION] [--federation ID (needed without a node home)]",
		Short: "Issue an access grant",
		Long: `Signs an access grant with an issuer key. The federation (the grant's
audience) is taken from the node home (--home, $NII_HOME, ./nii-data); on an
admin's machine with no node home, give it with --federation. A grant may be
valid for at most a year (nodes refuse longer ones); --ttl sets how long.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, fed, err := issuer(g, key, fed)
			if err != nil {
				return err
			}
			tok, gc, err := auth.IssueGrant(k, auth.GrantSpec{Federation: fed, Subject: to, Datasets: splitList(datasets),
				Actions: actionList(actions), Node: nii.NodeID(bind), TTL: ttl})
			if err != nil {
				return err
			}
			if g.json {
				if out != "" {
					if err := writeToken(cmd, out, tok); err != nil {
						return err
					}
				}
				return printJSON(cmd.OutOrStdout(), map[string]any{"id": gc.ID, "to": to, "datasets": gc.Datasets, "actions": gc.Actions,
					"expires": gc.ExpiresAt.UTC(), "file": out, "token": tok})
			}
			if err := writeToken(cmd, out, tok); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "grant %s: %s may %s %s until %s\n", gc.ID, to, joinActions(gc.Actions),
				strings.Join(gc.Datasets, ","), gc.ExpiresAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	addJSON(c, g)
	c.Flags().StringVar(&key, "key", "", "the issuer key file (from nii keygen)")
	c.Flags().StringVar(&to, "to", "", "who may use it: an org (its enrolled nodes) or one node ID")
	c.Flags().StringVar(&datasets, "datasets", "", "dataset patterns, comma-separated (greenwich/spend-*)")
	c.Flags().StringVar(&actions, "actions", "read", "read (pull), sync (follow), comma-separated")
	c.Flags().DurationVar(&ttl, "ttl", 720*time.Hour, "how long the grant is valid")
	c.Flags().StringVar(&bind, "node", "", "bind the grant to this node ID: useless to anyone else if leaked")
	c.Flags().StringVar(&fed, "federation", "", "the federation (default: the home's; required with no node home)")
	c.Flags().StringVarP(&out, "out", "o", "", "write the grant to this file (mode 0600) instead of printing it")
	for _, f := range []string{"key", "to", "datasets"} {
		c.MarkFlagRequired(f)
	}
	return c
}

func actionList(s string) []nii.Action {
	var out []nii.Action
	for _, a := range splitList(s) {
		out = append(out, nii.Action(a))
	}
	return out
}

func joinActions(as []nii.Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ",")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func grantInspectCmd(g *globals) *cobra.Command {
	var body api.InspectRequest
	c := &cobra.Command{
		Use:   "inspect TOKEN|@FILE",
		Short: "Show a token's claims and whether this node would accept it, and why not",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := readGrant(args[0])
			if err != nil {
				return err
			}
			body.Token = tok
			var rep *api.TokenReport
			cl, err := api.Dial(g.home)
			if err == nil {
				rep, err = cl.Inspect(cmd.Context(), body)
			}
			if err != nil {
				if !errors.Is(err, api.ErrNotRunning) && !errors.Is(err, api.ErrNoHome) {
					return err
				}
				// No node to ask: decode only.
				r := node.InspectUnchecked(tok, "no running node at "+g.home+" to check it against; claims shown unverified")
				rep = &r
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			return printReport(cmd.OutOrStdout(), rep)
		},
	}
	c.Flags().StringVar(&body.Dataset, "dataset", "", "check access to this dataset (ORG/NAME) too")
	c.Flags().StringVar(&body.Action, "action", "", "the action to check (read or sync)")
	c.Flags().StringVar((*string)(&body.Node), "as-node", "", "check as this requesting node (default: this node)")
	c.Flags().StringVar(&body.Org, "as-org", "", "the requesting node's verified org")
	addJSON(c, g)
	return c
}

func printReport(w io.Writer, r *api.TokenReport) error {
	tw := tabw(w)
	fmt.Fprintf(tw, "type\t%s\n", orDash(r.Type))
	for _, k := range []string{"iss", "sub", "aud", "jti", "org", "name", "datasets", "actions", "cnf", "revokes"} {
		if v, ok := r.Claims[k]; ok {
			b, _ := json.Marshal(v)
			fmt.Fprintf(tw, "%s\t%s\n", k, strings.Trim(string(b), `"`))
		}
	}
	for _, k := range []string{"iat", "nbf", "exp"} {
		if v, ok := r.Claims[k].(float64); ok {
			fmt.Fprintf(tw, "%s\t%s\n", k, time.Unix(int64(v), 0).UTC().Format(time.RFC3339))
		}
	}
	if r.Valid {
		fmt.Fprintf(tw, "verdict\taccepted\n")
	} else {
		fmt.Fprintf(tw, "verdict\trefused (%s): %s\n", r.Reason, r.Detail)
	}
	return tw.Flush()
}

func grantRevokeCmd(g *globals) *cobra.Command {
	var key, fed, out, submit string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "revoke --key FILE JTI | --submit FILE",
		Short: "Revoke a grant or credential by its ID; the node of --home spreads it",
		Long: `Signs a revocation of the grant or credential with ID JTI and hands it to the
node of --home, which spreads it through the federation; every node then
refuses the token. With -o the revocation is also saved, so that it can be
made offline and handed to a node later with --submit FILE.`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var tok string
			switch {
			case submit != "":
				t, err := readGrant("@" + submit)
				if err != nil {
					return err
				}
				tok = t
			case len(args) != 1 || key == "":
				return errors.New("give --key FILE and the ID (jti) of the grant or credential to revoke")
			default:
				k, fed, err := issuer(g, key, fed)
				if err != nil {
					return err
				}
				if tok, _, err = auth.IssueRevocation(k, fed, args[0], ttl); err != nil {
					return err
				}
				if out != "" {
					if err := writeToken(cmd, out, tok); err != nil {
						return err
					}
				}
			}
			cl, err := api.Dial(g.home)
			if err != nil {
				if out != "" {
					if g.json {
						return printJSON(cmd.OutOrStdout(), map[string]any{"revokes": args[0], "file": out, "submitted": false})
					}
					fmt.Fprintf(cmd.OutOrStdout(), "revocation saved to %s; hand it to a running node with: nii grant revoke --submit %s\n", out, out)
					return nil
				}
				return fmt.Errorf("%w (or pass -o FILE to save the revocation)", err)
			}
			res, err := cl.Revoke(cmd.Context(), tok)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"revokes": res.Revokes, "new": res.New, "file": out, "submitted": true})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s; spreading through the federation\n", res.Revokes)
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "the issuer key file")
	c.Flags().StringVar(&fed, "federation", "", "the federation (default: the home's)")
	c.Flags().StringVarP(&out, "out", "o", "", "also write the revocation to this file")
	c.Flags().StringVar(&submit, "submit", "", "hand a saved revocation FILE to the node instead of issuing one")
	c.Flags().DurationVar(&ttl, "ttl", auth.MaxTTL, "how long nodes keep the revocation (at least as long as the revoked token could be valid)")
	addJSON(c, g)
	return c
}

func auditCmd(g *globals) *cobra.Command {
	var limit int
	var after uint64
	var dataset, result, nodeID string
	var oldest bool
	c := &cobra.Command{
		Use:   "audit",
		Short: "Show access decisions: who asked for what, when, allowed or refused and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			q.Set("limit", strconv.Itoa(limit))
			if after > 0 {
				q.Set("after", strconv.FormatUint(after, 10))
			}
			if !oldest {
				q.Set("order", "newest")
			}
			for k, v := range map[string]string{"dataset": dataset, "result": result, "node": nodeID} {
				if v != "" {
					q.Set(k, v)
				}
			}
			return fetchAndPrint(cmd, g, func(cl *api.Client, ctx context.Context) (*api.AuditPage, error) { return cl.Audit(ctx, q) },
				func(w io.Writer, p *api.AuditPage) error {
					tw := tabw(w)
					fmt.Fprintln(tw, "SEQ\tTIME\tNODE\tORG\tDATASET\tACTION\tRESULT\tREASON\tGRANT")
					for _, r := range p.Records {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Format(time.RFC3339), r.Node.Short(), orDash(r.Org),
							r.Dataset, r.Action, r.Result, r.Reason, grantCell(r))
					}
					if p.Next != 0 {
						fmt.Fprintf(tw, "(more: --after %d)\n", p.Next)
					}
					return tw.Flush()
				})
		},
	}
	c.Flags().IntVar(&limit, "limit", 50, "records per page (at most 1000)")
	c.Flags().Uint64Var(&after, "after", 0, "continue from this record seq")
	c.Flags().BoolVar(&oldest, "oldest", false, "oldest first (default newest first)")
	c.Flags().StringVar(&dataset, "dataset", "", "only decisions on ORG/NAME")
	c.Flags().StringVar(&result, "result", "", "only allowed or refused")
	c.Flags().StringVar(&nodeID, "node", "", "only requests from this node ID")
	addJSON(c, g)
	return c
}

// grantCell shows an audit record's grant ID; one read from a token whose
// signature did not verify is marked "(unverified)".
func grantCell(r api.AuditRecord) string {
	if r.GrantUnverified {
		return r.Grant + " (unverified)"
	}
	return orDash(r.Grant)
}
