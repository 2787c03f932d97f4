package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/rpc"
)

type certFlags struct {
	certsDir string
	caKey    string
	lifetime time.Duration
}

func (f *certFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.certsDir, "certs-dir", "certs", "directory holding ca.crt and the node and client certificates")
	fl.StringVar(&f.caKey, "ca-key", "", "path of the CA key (default CERTS-DIR/ca.key); keep it off the nodes")
	fl.DurationVar(&f.lifetime, "lifetime", 5*365*24*time.Hour, "how long the certificate is valid")
}

func (f *certFlags) key() string {
	if f.caKey != "" {
		return f.caKey
	}
	return filepath.Join(f.certsDir, "ca.key")
}

func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Create the certificates for mutual TLS: a CA, node certificates, client certificates",
		Long: `cert creates the certificates Meridian's mutual TLS uses (ECDSA P-256,
TLS 1.3). Nodes serve with node.crt and dial each other with it; clients
present client.USER.crt; everyone trusts ca.crt. Existing files are never
overwritten.`,
		Example: `  meridian cert create-ca --certs-dir certs --ca-key my-safe/ca.key
  meridian cert create-node 127.0.0.1 localhost node1.example --certs-dir certs --ca-key my-safe/ca.key
  meridian cert create-client root --certs-dir certs --ca-key my-safe/ca.key`,
	}
	ca := &certFlags{}
	createCA := &cobra.Command{
		Use:   "create-ca",
		Short: "Create the CA key and certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rpc.CreateCA(ca.certsDir, ca.key(), ca.lifetime); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", filepath.Join(ca.certsDir, rpc.CACertFile), ca.key())
			return nil
		},
	}
	ca.register(createCA)
	nd := &certFlags{}
	createNode := &cobra.Command{
		Use:   "create-node HOST...",
		Short: "Create a node certificate for the given IP addresses and DNS names",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rpc.CreateNode(nd.certsDir, nd.key(), args, nd.lifetime); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s for %v\n", filepath.Join(nd.certsDir, rpc.NodeCertFile),
				filepath.Join(nd.certsDir, rpc.NodeKeyFile), args)
			return nil
		},
	}
	nd.register(createNode)
	cl := &certFlags{}
	createClient := &cobra.Command{
		Use:   "create-client USER",
		Short: "Create a client certificate for USER",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rpc.CreateClient(cl.certsDir, cl.key(), args[0], cl.lifetime); err != nil {
				return err
			}
			crt, key := rpc.ClientCertFiles(args[0])
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", filepath.Join(cl.certsDir, crt), filepath.Join(cl.certsDir, key))
			return nil
		},
	}
	cl.register(createClient)
	cmd.AddCommand(createCA, createNode, createClient)
	return cmd
}
