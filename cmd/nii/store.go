package main

import (
	"fmt"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/nii-uk/nii/node/api"
)

// storeCmd is 'nii store verify' and 'nii store gc': the store's upkeep,
// run by the daemon (docs/operations.md).
func storeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "store",
		Short: "Check the store for damage (verify) or reclaim unreferenced chunks (gc)",
	}
	var timeout time.Duration
	dial := func() (*api.Client, error) {
		cl, err := api.Dial(g.home)
		if err != nil {
			return nil, err
		}
		cl.Timeout = timeout
		return cl, nil
	}
	verify := &cobra.Command{
		Use:   "verify [--json]",
		Short: "Re-read every stored chunk against its hash; withdraw and re-fetch damaged versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dial()
			if err != nil {
				return err
			}
			res, err := cl.VerifyStore(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "checked %d versions: %d chunks, %s, in %s\n", res.Versions, res.Chunks, humanize.IBytes(uint64(res.Bytes)), res.Took)
			if len(res.Damaged) == 0 {
				fmt.Fprintln(out, "no damage found")
				return nil
			}
			failed := 0
			for _, d := range res.Damaged {
				state := "repaired from the federation"
				if !d.Repaired {
					state, failed = "NOT repaired: "+d.RepairError, failed+1
				}
				fmt.Fprintf(out, "damaged %s: %d chunks missing, %d corrupt (%s); %s\n", d.Ref, d.Missing, d.Corrupt, d.Reason, state)
				if d.AdvertWithdrawn {
					fmt.Fprintf(out, "  this node's replica advert of %s was withdrawn\n", d.Ref)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d damaged versions are not repaired (the node retries every minute; docs/operations.md says what to do)", failed)
			}
			return nil
		},
	}
	gc := &cobra.Command{
		Use:   "gc [--json]",
		Short: "Delete chunks no version names (left by interrupted publishes and pulls)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dial()
			if err != nil {
				return err
			}
			res, err := cl.CollectGarbage(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reclaimed %d chunks, %s (kept %d chunks of %d versions; %d spared for publishes or pulls in flight) in %s\n",
				res.Chunks, humanize.IBytes(uint64(res.Bytes)), res.KeptChunks, res.Versions, res.SparedChunks, res.Took)
			fmt.Fprintf(cmd.OutOrStdout(), "store on disk: %s before, %s after (%d value-log files rewritten; badger returns the rest as it compacts)\n",
				humanize.IBytes(uint64(res.DiskBefore)), humanize.IBytes(uint64(res.DiskAfter)), res.VlogRewrites)
			return nil
		},
	}
	for _, sub := range []*cobra.Command{verify, gc} {
		addJSON(sub, g)
		sub.Flags().DurationVar(&timeout, "timeout", time.Hour, "how long to wait for the node to finish")
		c.AddCommand(sub)
	}
	return c
}
