package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
			var st *meridianpb.StatusResponse
			err := f.conn.withAdmin(cmd.Context(), func(ctx context.Context, admin meridianpb.AdminClient) (err error) {
				st, err = admin.Status(ctx, &meridianpb.StatusRequest{})
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.output == "json" {
				return json.NewEncoder(out).Encode(st)
			}
			fmt.Fprintf(out, "node %d  region %s  %s  initialized=%v draining=%v\n", st.Node.Id, st.Node.Region, st.Node.Addr, st.Initialized, st.Draining)
			printNodeClock(out, st.Clock)
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
	cmd.AddCommand(status, newFenceCmd(false), newFenceCmd(true))
	return cmd
}

// printNodeClock prints a node's clock: its source and ε, or why it gives no
// interval (fenced: the kind, reason and hold), and the last clock
// exchange with every peer.
func printNodeClock(out io.Writer, c *meridianpb.ClockStatus) {
	switch {
	case c.Healthy:
		fmt.Fprintf(out, "clock: %s, ε %s\n", c.Source, time.Duration(c.EpsilonNs))
	case c.FenceKind != "":
		fmt.Fprintf(out, "clock: %s, FENCED (%s) since %s: %s\n", c.Source, c.FenceKind,
			time.Unix(0, c.FencedSinceNs).UTC().Format(time.RFC3339), c.FenceReason)
		if c.HoldLeftNs > 0 {
			fmt.Fprintf(out, "  the hold waiting out leases of the old time runs %s more\n", time.Duration(c.HoldLeftNs).Round(time.Millisecond))
		}
	default:
		fmt.Fprintf(out, "clock: %s, UNHEALTHY: %s\n", c.Source, c.Error)
	}
	for _, p := range c.Peers {
		switch {
		case p.Error != "":
			fmt.Fprintf(out, "  peer node %d: no answer %s ago: %s\n", p.Node, time.Duration(p.AgeNs).Round(time.Millisecond), p.Error)
		default:
			agree := "agrees"
			if !p.Agrees {
				agree = "DISAGREES"
			}
			fmt.Fprintf(out, "  peer node %d: %s (its clock %s, ε %s, round trip %s, %s ago)\n", p.Node, agree,
				clockStateName(p.State), time.Duration((p.LatestNs-p.EarliestNs)/2), time.Duration(p.RttNs).Round(time.Microsecond),
				time.Duration(p.AgeNs).Round(time.Millisecond))
		}
	}
}

func clockStateName(s meridianpb.ClockState) string {
	switch s {
	case meridianpb.ClockState_CLOCK_STATE_TRUSTED:
		return "trusted"
	case meridianpb.ClockState_CLOCK_STATE_UNCONFIRMED:
		return "unconfirmed"
	case meridianpb.ClockState_CLOCK_STATE_FENCED:
		return "fenced"
	}
	return "unhealthy"
}

// newFenceCmd returns `node fence` or `node unfence`.
func newFenceCmd(unfence bool) *cobra.Command {
	f := &struct {
		conn   connFlags
		reason string
	}{}
	use, short, long := "fence", "Fence a node's clock: it stops leading, voting and picking timestamps until unfenced",
		`fence makes a node stop trusting its clock, as it does by itself when its time
sources step or its peers disagree with it: its replicas step down and vote for
no one, and it serves no read that takes its timestamp from the clock. Its
shards keep serving through their other replicas once its leases run out.
It stays fenced until 'meridian node unfence'.`
	if unfence {
		use, short, long = "unfence", "Lift a node's clock fence once the leases of its old time have run out",
			`unfence lifts the fence of a node's clock, whatever fenced it, and the clock
adopts the time its sources give now: you vouch for that time (a node fenced
by a step or by its peers lifts its own fence once a majority of the cluster
confirms its time). It is refused until a lease (plus a margin) has passed
since the fence, so that no lease vote, lease or timestamp the node issued
under its old time still binds.`
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.conn.withAdmin(cmd.Context(), func(ctx context.Context, admin meridianpb.AdminClient) error {
				st, err := admin.ClockFence(ctx, &meridianpb.ClockFenceRequest{Unfence: unfence, Reason: f.reason})
				if err != nil {
					return err
				}
				printNodeClock(cmd.OutOrStdout(), st)
				return nil
			})
		},
	}
	f.conn.register(cmd)
	if !unfence {
		cmd.Flags().StringVar(&f.reason, "reason", "", "why, for the node's log and status")
	}
	return cmd
}
