// Command meridian is Meridian's one binary: it runs nodes, initializes
// clusters, opens a shell, runs workloads, benchmarks and the simulator, and
// inspects the clock. Run `meridian --help` for the list of commands.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(code)
	}
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "meridian",
		Short: "Meridian: a globally replicated, externally consistent key-value database",
		Long: `Meridian is a Spanner-style transactional key-value database. An interval
clock built on NTP bounds (TrueTime) assigns commit timestamps, Multi-Paxos
groups over Pebble replicate each shard, and two-phase commit with commit wait
makes cross-region transactions externally consistent.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.setupLogging(cmd.ErrOrStderr())
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn or error (logs go to stderr)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newClockCmd(),
		newSimCmd(),
		newChaosCmd(),
		newDemoCmd(),
		newStartCmd(),
		newInitCmd(),
		newNodeCmd(),
		newShellCmd(),
		newWorkloadCmd(),
		newCertCmd(),
		newVersionCmd(),
	)
	return root
}
