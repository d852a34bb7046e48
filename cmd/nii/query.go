package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nii-uk/nii/node/api"
)

func queryCmd(g *globals) *cobra.Command {
	var asCSV, tables bool
	var maxRows int
	c := &cobra.Command{
		Use:   "query SQL",
		Short: "Run read-only SQL over merged views and the tabular datasets the node holds",
		Long: `Runs one read-only SQL statement (DuckDB's dialect) on the node and prints the
result as a table, or --json / --csv. Name tables quoted, as their refs:

  nii query "SELECT _publisher, date_trunc('month', date) m, sum(amount) FROM 'lga/spend-over-500' GROUP BY ALL ORDER BY 1,2"
  nii query "SELECT count(*) FROM 'greenwich/spend@3'"
  nii query --tables

A merged view is named as its standard; a tabular dataset as org/name (the
latest version the node holds) or org/name@N. SQL - reads the statement from
standard input. The node's [query] settings limit every query: memory_limit,
threads, timeout and max_rows (see docs/query.md).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if tables {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := api.Dial(g.home)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			// The CLI runs on the node's own machine with its home: it
			// speaks as the operator, and so sees restricted data too.
			admin := cl.Token != ""
			if tables {
				ts, err := cl.QueryTables(cmd.Context(), admin)
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(out, ts)
				}
				return printQueryTables(out, ts)
			}
			sql := args[0]
			if sql == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return fmt.Errorf("read SQL from standard input: %w", err)
				}
				sql = string(b)
			}
			format := api.FormatTable
			switch {
			case g.json && asCSV:
				return fmt.Errorf("--json and --csv: choose one")
			case g.json:
				format = api.FormatJSON
			case asCSV:
				format = api.FormatCSV
			}
			notice, err := cl.Query(cmd.Context(), sql, format, maxRows, admin, out)
			if err != nil {
				return err
			}
			if notice != "" && format != api.FormatTable {
				fmt.Fprintln(cmd.ErrOrStderr(), "nii:", notice)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&g.json, "json", false, "print the result as JSON (columns, rows, truncated)")
	c.Flags().BoolVar(&asCSV, "csv", false, "print the result as CSV")
	c.Flags().IntVar(&maxRows, "max-rows", 0, "print at most N rows (at most the node's [query] max_rows)")
	c.Flags().BoolVar(&tables, "tables", false, "list the tables SQL can name")
	return c
}

func printQueryTables(out io.Writer, ts []api.QueryTable) error {
	if len(ts) == 0 {
		fmt.Fprintln(out, "no tables: publish or pull a CSV dataset, or merge a standard")
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TABLE\tKIND\tACCESS\tROWS\tLOADED\tCOLUMNS")
	for _, t := range ts {
		rows := "-"
		if t.Rows != nil {
			rows = fmt.Sprint(*t.Rows)
		}
		loaded := "no"
		if t.Loaded {
			loaded = fmt.Sprintf("yes (%d MiB)", t.MemoryBytes>>20)
		}
		cols := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cols[i] = c.Name + " " + strings.ToLower(c.SQLType)
		}
		fmt.Fprintf(w, "'%s'\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Kind, t.Access, rows, loaded, strings.Join(cols, ", "))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, t := range ts {
		for _, n := range t.Notes {
			fmt.Fprintf(out, "'%s': %s\n", t.Name, n)
		}
	}
	return nil
}
