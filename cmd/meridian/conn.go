package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/rpc"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// connFlags are the flags of every command that talks to a cluster.
type connFlags struct {
	host     string
	insecure bool
	certsDir string
	user     string
	region   string
	timeout  time.Duration
	unary    bool // set by commands that offer --unary
}

func (f *connFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.host, "host", "127.0.0.1:26257", "address of any node (comma-separated for several)")
	fl.BoolVar(&f.insecure, "insecure", false, "talk plaintext gRPC instead of mutual TLS")
	fl.StringVar(&f.certsDir, "certs-dir", "certs", "directory with ca.crt and client.USER.crt/.key (mutual TLS)")
	fl.StringVar(&f.user, "user", "root", "client certificate to present: client.USER.crt")
	fl.StringVar(&f.region, "region", "", "the region this client runs in (bounded-staleness reads go to a replica there)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "timeout of each request")
}

// tls returns the client TLS configuration, nil with --insecure.
func (f *connFlags) tls() (*tls.Config, error) {
	if f.insecure {
		return nil, nil
	}
	c, err := rpc.ClientTLS(f.certsDir, f.user)
	if err != nil {
		return nil, fmt.Errorf("%w (create certificates with meridian cert, or pass --insecure)", err)
	}
	return c, nil
}

func (f *connFlags) client(ctx context.Context) (*client.Client, error) {
	tc, err := f.tls()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	return client.New(cctx, client.Config{Addrs: splitList(f.host), Region: f.region, TLS: tc, Insecure: tc == nil, Unary: f.unary})
}

// adminConn opens a connection to the first host for admin calls.
func (f *connFlags) adminConn() (*grpc.ClientConn, meridianpb.AdminClient, error) {
	tc, err := f.tls()
	if err != nil {
		return nil, nil, err
	}
	hosts := splitList(f.host)
	if len(hosts) == 0 {
		return nil, nil, errors.New("--host is empty")
	}
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(hosts[0], meridianpb.DialOptions(creds)...)
	if err != nil {
		return nil, nil, err
	}
	return conn, meridianpb.NewAdminClient(conn), nil
}

// withAdmin dials the --host node's admin service and calls fn with a
// context bounded by --timeout.
func (f *connFlags) withAdmin(ctx context.Context, fn func(ctx context.Context, admin meridianpb.AdminClient) error) error {
	conn, admin, err := f.adminConn()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	return fn(ctx, admin)
}
