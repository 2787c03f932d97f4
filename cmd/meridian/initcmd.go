package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/rpc/meridianpb"
)

type initFlags struct {
	conn            connFlags
	policy          string
	replicas        int
	shardsPerRegion int
	lease           time.Duration
	output          string
}

func newInitCmd() *cobra.Command {
	f := &initFlags{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write the placement into a new cluster (once): regions, shards, replicas",
		Long: `init asks a node to place the cluster over every node that has joined it:
one shard per region (or --shards-per-region), homed there, splitting the key
space over the letters a–z, and per shard:

  regional  the voters on nodes of the home region, one read-only replica in
            every other region: local commits and local stale reads;
  spread    the voters in different regions: survives losing a region, every
            commit pays the round trip to the nearest majority.

It runs once; a second init is refused.`,
		Example: `  meridian init --insecure --host 127.0.0.1:26257 --policy spread --replicas 3`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, args []string) error { return runInit(cmd, f) },
	}
	f.conn.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.policy, "policy", "regional", "placement policy: regional or spread")
	fl.IntVar(&f.replicas, "replicas", 3, "voting replicas per shard (1, 3 or 5)")
	fl.IntVar(&f.shardsPerRegion, "shards-per-region", 1, "shards homed in each region")
	fl.DurationVar(&f.lease, "lease", 10*time.Second, "leader lease duration")
	fl.StringVarP(&f.output, "output", "w", "table", "output format: table or json")
	return cmd
}

func runInit(cmd *cobra.Command, f *initFlags) error {
	if err := outputFormat(f.output, "table", "json"); err != nil {
		return err
	}
	conn, admin, err := f.conn.adminConn()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	resp, err := admin.Init(ctx, &meridianpb.InitRequest{Policy: f.policy, Replicas: int32(f.replicas),
		ShardsPerRegion: int32(f.shardsPerRegion), LeaseNs: int64(f.lease)})
	if err != nil {
		return err
	}
	return printPlacement(cmd.OutOrStdout(), f.output, resp.Placement)
}

func printPlacement(w io.Writer, format string, p *meridianpb.Placement) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(p)
	}
	addr := map[uint64]string{}
	region := map[uint64]string{}
	for _, n := range p.Nodes {
		addr[n.Id], region[n.Id] = n.Addr, n.Region
	}
	fmt.Fprintf(w, "cluster initialized: %d regions, %d nodes, %d shards, lease %s\n", len(p.Regions), len(p.Nodes), len(p.Shards), time.Duration(p.LeaseNs))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tRANGE\tHOME\tPOLICY\tVOTERS\tREAD-ONLY")
	for _, s := range p.Shards {
		var voters, learners []string
		for _, r := range s.Replicas {
			d := fmt.Sprintf("%s@%s", addr[r.Node], region[r.Node])
			if r.Voter {
				voters = append(voters, d)
			} else {
				learners = append(learners, d)
			}
		}
		end := fmt.Sprintf("%q", s.End)
		if len(s.End) == 0 {
			end = "∞"
		}
		fmt.Fprintf(tw, "%d\t[%q, %s)\t%s\t%s\t%s\t%s\n", s.Group, s.Start, end, s.Home, s.Policy, strings.Join(voters, " "), strings.Join(learners, " "))
	}
	return tw.Flush()
}
