package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// connFlags are the flags of every command that talks to a cluster.
type connFlags struct {
	host     string
	insecure bool
	region   string
	timeout  time.Duration
}

func (f *connFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.host, "host", "127.0.0.1:26257", "address of any node (comma-separated for several)")
	fl.BoolVar(&f.insecure, "insecure", false, "talk plaintext gRPC (required until TLS credentials are configured)")
	fl.StringVar(&f.region, "region", "", "the region this client runs in (bounded-staleness reads go to a replica there)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "timeout of each request")
}

func (f *connFlags) check() error {
	if !f.insecure {
		return errors.New("TLS is not configured yet: pass --insecure to talk plaintext")
	}
	return nil
}

func (f *connFlags) client(ctx context.Context) (*client.Client, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	return client.New(cctx, client.Config{Addrs: splitList(f.host), Region: f.region, Insecure: true})
}

// adminConn opens a connection to the first host for admin calls.
func (f *connFlags) adminConn() (*grpc.ClientConn, meridianpb.AdminClient, error) {
	if err := f.check(); err != nil {
		return nil, nil, err
	}
	hosts := splitList(f.host)
	if len(hosts) == 0 {
		return nil, nil, errors.New("--host is empty")
	}
	conn, err := grpc.NewClient(hosts[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return conn, meridianpb.NewAdminClient(conn), nil
}
