package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// readGrant takes a token or @FILE.
func readGrant(s string) (string, error) {
	if f, ok := strings.CutPrefix(s, "@"); ok {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("--grant %s: %w", s, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(s), nil
}

func pullCmd(g *globals) *cobra.Command {
	var out, grant, mode string
	var quiet, allowUnverified, noFsync bool
	c := &cobra.Command{
		Use:   "pull ORG/NAME[@N] [--grant TOKEN|@FILE] [-o FILE] [--allow-unverified]",
		Short: "Fetch a dataset version from the federation, verified, into the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := nii.ParseRef(args[0])
			if err != nil {
				return err
			}
			if grant, err = readGrant(grant); err != nil {
				return err
			}
			if out != "" && out != "-" {
				if fi, err := os.Stat(out); err == nil && fi.IsDir() {
					return fmt.Errorf("%s is a directory: give a file name", out)
				}
			}
			if _, err := outputMode("", mode, cmd.Flags().Changed("mode")); err != nil {
				return err // before the pull, not after
			}
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			progress := func(done, total int64) {
				if quiet || total == 0 {
					return
				}
				if bar == nil {
					bar = newBytesBar(cmd.ErrOrStderr(), total, "pulling "+ref.String())
				}
				bar.Set64(done)
			}
			req := api.PullRequest{Ref: ref.String(), Grant: grant, AllowUnverified: allowUnverified}
			done := func(sum *api.PullSummary) {
				if bar != nil {
					bar.Finish()
				}
				if !sum.PublisherVerified && allowUnverified {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s came from node %s, whose claim to org %s no membership credential proves (pulled as asked, with --allow-unverified)\n",
						ref.Dataset, sum.Version.Publisher, ref.Dataset.Org)
				}
				v := sum.Version
				if g.json {
					printJSON(cmd.OutOrStdout(), sum)
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "pulled %s (%s): fetched %d chunks (%s) from %d provider(s), %d already held\n",
						v.Ref, humanize.IBytes(uint64(v.Size)), sum.FetchedChunks, humanize.IBytes(uint64(sum.FetchedBytes)),
						len(sum.Providers), sum.HeldChunks)
				}
			}
			if out != "" && out != "-" {
				// The daemon writes the file as the chunks arrive, where
				// the export socket lets it.
				sum, err := pullToFile(cmd.Context(), cl, req, out, mode, cmd.Flags().Changed("mode"), durability(noFsync), progress)
				if !errors.Is(err, api.ErrNoFastPath) {
					if err != nil {
						if bar != nil {
							bar.Finish()
						}
						return err
					}
					done(sum)
					fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s to %s\n", sum.Version.Ref, out)
					return nil
				}
			}
			sum, err := cl.PullWith(cmd.Context(), req, progress)
			if err != nil {
				if bar != nil {
					bar.Finish()
				}
				return err
			}
			done(sum)
			if out == "" {
				return nil
			}
			v := sum.Version
			pulled := nii.Ref{Dataset: ref.Dataset, Version: v.Version}
			if out == "-" {
				_, _, err := cl.Content(cmd.Context(), pulled, cmd.OutOrStdout())
				return err
			}
			perm, err := outputMode(v.Meta.Access, mode, cmd.Flags().Changed("mode"))
			if err != nil {
				return err
			}
			if _, _, err := exportFile(cmd.Context(), cl, pulled, out, perm, durability(noFsync)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s to %s\n", v.Ref, out)
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "also write the file here (- for standard output)")
	c.Flags().StringVar(&grant, "grant", "", "access grant for a restricted dataset: the token, or @FILE")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	addModeFlag(c, &mode)
	addNoFsyncFlag(c, &noFsync)
	c.Flags().BoolVar(&allowUnverified, "allow-unverified", false, "take the data even if no membership credential proves the publisher's org (a node with trust anchors refuses otherwise)")
	addJSON(c, g)
	return c
}

func followCmd(g *globals) *cobra.Command {
	var (
		grant, publish, title string
		allowUnverified       bool
		grants                []string
		partial               bool
	)
	c := &cobra.Command{
		Use:   "follow ORG/NAME [--grant TOKEN|@FILE] [--allow-unverified] | follow STANDARD --publish ORG/NAME",
		Short: "Keep a dataset in sync, or keep a merged view of a standard current",
		Long: `nii follow ORG/NAME pulls every new version of the dataset as its advert
arrives. nii follow STANDARD --publish ORG/NAME keeps a merged dataset of the
standard current instead: whenever a source that conforms to it (or has a
mapping to it), a mapping or the standard gets a new version, this node merges
again — re-mapping only what changed — and publishes the next version of
ORG/NAME with its lineage.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := readGrant(grant)
			if err != nil {
				return err
			}
			if publish != "" {
				std, err := nii.ParseRef(args[0])
				if err != nil {
					return err
				}
				req := api.WatchRequest{Standard: std.String(), Publish: publish, Title: title, AllowPartial: partial}
				for _, gr := range append(grants, tok) {
					if gr == "" {
						continue
					}
					t, err := readGrant(gr)
					if err != nil {
						return err
					}
					req.Grants = append(req.Grants, t)
				}
				cl, err := api.Dial(g.home)
				if err != nil {
					return err
				}
				w, err := cl.Watch(cmd.Context(), req)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "keeping %s current as the merge of %s: merged and published now, and again whenever an input changes; 'nii standards' shows its state\n", w.Publish, w.Standard)
				return nil
			}
			return withDataset(cmd, g, args[0], func(cl *api.Client, d nii.DatasetID) error {
				f, err := cl.FollowWith(cmd.Context(), api.FollowRequest{Dataset: d.String(), Grant: tok, AllowUnverified: allowUnverified})
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(cmd.OutOrStdout(), f)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "following %s: new versions are pulled as they are advertised; 'nii datasets' shows sync state\n", d)
				return nil
			})
		},
	}
	c.Flags().StringVar(&grant, "grant", "", "access grant for a restricted dataset: the token, or @FILE")
	c.Flags().StringVar(&publish, "publish", "", "follow a standard: keep the merged dataset ORG/NAME (this node's org) current")
	c.Flags().StringVar(&title, "title", "", "with --publish: the merged dataset's title")
	c.Flags().BoolVar(&partial, "allow-partial", false, "with --publish: merge what can be read when some sources cannot")
	c.Flags().StringArrayVar(&grants, "merge-grant", nil, "with --publish: more access grants for restricted sources (repeatable)")
	c.Flags().BoolVar(&allowUnverified, "allow-unverified", false, "follow it even if no membership credential proves the publisher's org")
	addJSON(c, g)
	return c
}

func unfollowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unfollow ORG/NAME",
		Short: "Stop keeping a dataset in sync (versions already pulled stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDataset(cmd, g, args[0], func(cl *api.Client, d nii.DatasetID) error {
				if err := cl.Unfollow(cmd.Context(), d); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "no longer following %s\n", d)
				return nil
			})
		},
	}
}

// pullToFile pulls through the export socket (api.Client.PullTo): the
// daemon pulls and writes path's temporary file as the chunks arrive, and
// the file is synced (unless d is node.PageCache) and renamed as for
// nii export. The file is created 0600, and widened to what outputMode
// allows only once the pull says the data is open: restricted data is
// never in a file others may read, not even for the pull's length.
// api.ErrNoFastPath means nothing was pulled or written: pull over the
// HTTP API instead.
func pullToFile(ctx context.Context, cl *api.Client, req api.PullRequest, path, mode string, modeSet bool, d node.Durability, progress func(done, total int64)) (*api.PullSummary, error) {
	perm := os.FileMode(0o600)
	if modeSet {
		var err error
		if perm, err = outputMode("", mode, true); err != nil {
			return nil, err
		}
	}
	var sum *api.PullSummary
	err := node.FillFileAtomic(path, perm, d, func(f *os.File) error {
		res, err := cl.PullTo(ctx, req, f, d == node.PageCache, progress)
		if err != nil {
			return err
		}
		sum = res.Pulled
		if modeSet {
			return nil
		}
		want, err := outputMode(sum.Version.Meta.Access, "", false)
		if err != nil || want == perm {
			return err
		}
		return node.ChmodAsCreated(f, want)
	})
	return sum, err
}
