package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/nii-uk/nii/node/api"
)

// problemsCmd lists the problem reports people made on this node's
// datasets (from its pages, the API or relayed by another node's page),
// and closes them: the officer's side of "report a problem".
func problemsCmd(g *globals) *cobra.Command {
	var dataset, state string
	c := &cobra.Command{
		Use:   "problems [--dataset ORG/NAME] [--state open|closed]",
		Short: "List the problem reports people made on this node's datasets; 'problems close ID' closes one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"dataset": dataset, "state": state} {
				if v != "" {
					q.Set(k, v)
				}
			}
			return fetchAndPrint(cmd, g, func(cl *api.Client, ctx context.Context) (*api.ProblemList, error) { return cl.Problems(ctx, q) },
				func(w io.Writer, l *api.ProblemList) error {
					if len(l.Problems) == 0 {
						_, err := fmt.Fprintln(w, "no problem reports")
						return err
					}
					tw := tabw(w)
					fmt.Fprintln(tw, "ID\tRECEIVED\tDATASET\tSTATE\tFROM\tVIA\tMESSAGE")
					for _, p := range l.Problems {
						from := p.Name
						if p.Email != "" {
							from += " <" + p.Email + ">"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Received.Format(time.RFC3339), p.Dataset, p.State,
							orDash(from), orDash(p.Via.Short()), oneLine(p.Message, 60))
					}
					return tw.Flush()
				})
		},
	}
	c.Flags().StringVar(&dataset, "dataset", "", "only reports on ORG/NAME")
	c.Flags().StringVar(&state, "state", "", "only open or closed reports")
	addJSON(c, g)
	closeCmd := &cobra.Command{
		Use:   "close ID",
		Short: "Mark a problem report closed (recorded in the audit log)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fetchAndPrint(cmd, g, func(cl *api.Client, ctx context.Context) (*api.ProblemReport, error) {
				return cl.CloseProblem(ctx, args[0])
			},
				func(w io.Writer, p *api.ProblemReport) error {
					_, err := fmt.Fprintf(w, "closed %s on %s\n", p.ID, p.Dataset)
					return err
				})
		},
	}
	addJSON(closeCmd, g)
	c.AddCommand(closeCmd)
	return c
}

// oneLine is s on one line, cut to at most n runes.
func oneLine(s string, n int) string {
	r := []rune(s)
	for i, c := range r {
		if c == '\n' || c == '\r' || c == '\t' {
			r[i] = ' '
		}
	}
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return string(r)
}
