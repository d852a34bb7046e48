// Command nii is the one binary of nii: it runs the node daemon (nii run) and
// is the CLI that talks to it through the daemon's local API, found through
// the node's home. It is kept thin: parse flags, call the API or a package
// function, print.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nii-uk/nii/query"
)

func main() {
	// Started as a SQL worker by the daemon: serve it and exit.
	query.RunWorkerIfAsked()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nii:", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		os.Exit(1)
	}
}

type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// globals holds the flags every command takes.
type globals struct {
	home string
	json bool
}

func defaultHome() string {
	if h := os.Getenv("NII_HOME"); h != "" {
		return h
	}
	return "nii-data"
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "nii",
		Short: "nii — a federated data-sharing node for public bodies",
		Long: `nii runs a node that stores and publishes datasets, advertises them to the
federation, and pulls or syncs datasets from other members.

Every command takes --home (default $NII_HOME, else ./nii-data). Commands that
talk to a running node find it through its home.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.home, "home", defaultHome(), "the node's home directory")
	// A key ID or a token is base64url and may begin with "-" (1 in 64
	// key IDs do): say how to pass it, not only that it is no flag.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if strings.Contains(err.Error(), "unknown shorthand flag") {
			return fmt.Errorf(`%w (an argument that begins with "-", such as a key ID, goes after "--": %s -- ARG)`, err, c.CommandPath())
		}
		return err
	})
	root.AddCommand(
		initCmd(g),
		runCmd(g),
		statusCmd(g),
		publishCmd(g),
		datasetsCmd(g),
		showCmd(g),
		exportCmd(g),
		searchCmd(g),
		peersCmd(g),
		withdrawCmd(g),
		pullCmd(g),
		followCmd(g),
		unfollowCmd(g),
		storeCmd(g),
		keygenCmd(g),
		trustCmd(g),
		enrolCmd(g),
		credentialCmd(g),
		grantCmd(g),
		auditCmd(g),
		problemsCmd(g),
		queryCmd(g),
		demoCmd(g),
		standardsCmd(g),
		mapCmd(g),
		mergeCmd(g),
		versionCmd(g),
	)
	return root
}

// addJSON adds the --json flag to list and show commands.
func addJSON(c *cobra.Command, g *globals) {
	c.Flags().BoolVar(&g.json, "json", false, "print JSON instead of a table")
}
