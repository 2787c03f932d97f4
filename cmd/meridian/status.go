package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/tt"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect nodes"}
	f := &struct {
		conn   connFlags
		output string
	}{}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show a node: its clock (ε), and for every replica it hosts the role, leader, lease, safe time and transactions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(f.output, "table", "json"); err != nil {
				return err
			}
			conn, admin, err := f.conn.adminConn()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), f.conn.timeout)
			defer cancel()
			st, err := admin.Status(ctx, &meridianpb.StatusRequest{})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.output == "json" {
				return json.NewEncoder(out).Encode(st)
			}
			fmt.Fprintf(out, "node %d  region %s  %s  initialized=%v draining=%v\n", st.Node.Id, st.Node.Region, st.Node.Addr, st.Initialized, st.Draining)
			if st.Clock.Healthy {
				fmt.Fprintf(out, "clock: %s, ε %s\n", st.Clock.Source, time.Duration(st.Clock.EpsilonNs))
			} else {
				fmt.Fprintf(out, "clock: %s, UNHEALTHY: %s\n", st.Clock.Source, st.Clock.Error)
			}
			now := tt.Timestamp(st.Clock.LatestNs)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tREPLICA\tROLE\tLEADER-NODE\tBALLOT\tLEASE-LEFT\tAPPLIED\tSAFE-TIME-LAG\tPREPARED\tTXNS\tLOCKS")
			for _, g := range st.Groups {
				lease := "-"
				if g.LeaseEndNs > 0 && now > 0 {
					lease = tt.Timestamp(g.LeaseEndNs).Sub(now).Round(time.Millisecond).String()
				}
				lag := "-"
				if g.SafeTimeNs > 0 && now > 0 {
					lag = now.Sub(tt.Timestamp(g.SafeTimeNs)).Round(time.Microsecond).String()
				}
				role := g.Role
				if !g.Voter {
					role += " (read-only)"
				}
				fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%s\t%s\t%d\t%s\t%d\t%d\t%d\n", g.Group, g.Replica, role, g.LeaderNode, g.Ballot, lease,
					g.AppliedIndex, lag, g.Prepared, g.ActiveTxns, g.Locks)
			}
			return tw.Flush()
		},
	}
	f.conn.register(status)
	status.Flags().StringVarP(&f.output, "output", "w", "table", "output format: table or json")
	cmd.AddCommand(status)
	return cmd
}
