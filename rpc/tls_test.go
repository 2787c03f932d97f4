package rpc

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/tt"
)

// makeCerts creates a CA, a node certificate for 127.0.0.1 and a client
// certificate in dir.
func makeCerts(t *testing.T, dir string) {
	t.Helper()
	key := filepath.Join(dir, "ca.key")
	if err := CreateCA(dir, key, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(dir, key, []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := CreateClient(dir, key, "root", time.Hour); err != nil {
		t.Fatal(err)
	}
}

// startTLSNode serves one node with mutual TLS from certsDir.
func startTLSNode(t *testing.T, certsDir string) string {
	t.Helper()
	stls, err := ServerTLS(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	ctls, err := NodeClientTLS(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Self: node.NodeInfo{ID: 1, Region: "r1", Addr: lis.Addr().String()}, Engine: eng,
		Clock: tt.NewSystem(time.Millisecond), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial: func(ctx context.Context, addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ctls)))
		}})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(stls)))
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		srv.Close()
		eng.Close()
	})
	return lis.Addr().String()
}

func statusCall(addr string, tc *tls.Config) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = meridianpb.NewAdminClient(conn).Status(ctx, &meridianpb.StatusRequest{})
	return err
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	makeCerts(t, dir)
	addr := startTLSNode(t, dir)

	good, err := ClientTLS(dir, "root")
	if err != nil {
		t.Fatal(err)
	}
	if err := statusCall(addr, good); err != nil {
		t.Fatalf("a client with a valid certificate: %v", err)
	}
	// A client without a certificate (it trusts the CA, presents nothing).
	noCert := &tls.Config{RootCAs: good.RootCAs, MinVersion: tls.VersionTLS13}
	if err := statusCall(addr, noCert); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// A node whose certificate comes from another CA.
	other := t.TempDir()
	makeCerts(t, other)
	foreign, err := NodeClientTLS(other)
	if err != nil {
		t.Fatal(err)
	}
	foreign.RootCAs = good.RootCAs // it even trusts our CA; we must not trust it
	if err := statusCall(addr, foreign); err == nil {
		t.Fatal("a node with a certificate from another CA was served")
	}
	// And a plaintext client gets nothing either.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err == nil {
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = meridianpb.NewAdminClient(conn).Status(ctx, &meridianpb.StatusRequest{})
		if err == nil {
			t.Fatal("a client that skipped verification and showed no certificate was served")
		}
	}
}

func TestCertsNeverOverwritten(t *testing.T) {
	dir := t.TempDir()
	makeCerts(t, dir)
	if err := CreateCA(dir, filepath.Join(dir, "ca.key"), time.Hour); err == nil {
		t.Fatal("create-ca overwrote an existing CA")
	}
	if err := CreateNode(dir, filepath.Join(dir, "missing.key"), []string{"x"}, time.Hour); err == nil {
		t.Fatal("create-node without the CA key succeeded")
	}
	if err := CreateClient(dir, filepath.Join(dir, "ca.key"), "", time.Hour); err == nil {
		t.Fatal("a client certificate without a user was made")
	}
}
