package rpc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certificate files in a certs directory, CockroachDB-style:
//
//	ca.crt                   the cluster's CA certificate
//	node.crt, node.key       a node's certificate (server and node-to-node client)
//	client.USER.crt/.key     a client's certificate (CN = USER)
//
// The CA key lives wherever --ca-key says (default certs/ca.key), and only
// where certificates are made.
const (
	CACertFile   = "ca.crt"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// ClientCertFiles returns the file names of a user's client certificate.
func ClientCertFiles(user string) (crt, key string) {
	return "client." + user + ".crt", "client." + user + ".key"
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126)) }

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w (remove it first to replace it)", path, err)
	}
	defer f.Close()
	return pem.Encode(f, &pem.Block{Type: kind, Bytes: der})
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

// CreateCA makes a CA key and self-signed certificate valid for lifetime.
func CreateCA(certsDir, caKeyPath string, lifetime time.Duration) error {
	k, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "Meridian CA", Organization: []string{"Meridian"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(lifetime),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return err
	}
	if err := writeKey(caKeyPath, k); err != nil {
		return err
	}
	return writePEM(filepath.Join(certsDir, CACertFile), "CERTIFICATE", der, 0o644)
}

func loadCA(certsDir, caKeyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(filepath.Join(certsDir, CACertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA certificate: %w (run meridian cert create-ca)", err)
	}
	kb, err := os.ReadFile(caKeyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA key: %w", err)
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, errors.New("the CA certificate or key is not PEM")
	}
	ca, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func sign(certsDir, caKeyPath, crtName, keyName string, tmpl *x509.Certificate) error {
	ca, caKey, err := loadCA(certsDir, caKeyPath)
	if err != nil {
		return err
	}
	k, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	tmpl.SerialNumber = sn
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(certsDir, keyName), k); err != nil {
		return err
	}
	return writePEM(filepath.Join(certsDir, crtName), "CERTIFICATE", der, 0o644)
}

// CreateNode makes a node certificate for hosts (IP addresses and DNS
// names), usable both to serve and to dial other nodes.
func CreateNode(certsDir, caKeyPath string, hosts []string, lifetime time.Duration) error {
	if len(hosts) == 0 {
		return errors.New("a node certificate needs at least one host (IP or DNS name)")
	}
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "node", Organization: []string{"Meridian"}},
		NotAfter: time.Now().Add(lifetime), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return sign(certsDir, caKeyPath, NodeCertFile, NodeKeyFile, tmpl)
}

// CreateClient makes a client certificate for user.
func CreateClient(certsDir, caKeyPath, user string, lifetime time.Duration) error {
	if user == "" {
		return errors.New("a client certificate needs a user name")
	}
	crt, key := ClientCertFiles(user)
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: user, Organization: []string{"Meridian"}},
		NotAfter: time.Now().Add(lifetime), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	return sign(certsDir, caKeyPath, crt, key, tmpl)
}

func caPool(certsDir string) (*x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(certsDir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("the CA certificate is not PEM")
	}
	return pool, nil
}

// ServerTLS returns a node's TLS configuration for serving: its node
// certificate, and clients must present a certificate signed by the CA.
func ServerTLS(certsDir string) (*tls.Config, error) {
	pool, err := caPool(certsDir)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(certsDir, NodeCertFile), filepath.Join(certsDir, NodeKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading the node certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13}, nil
}

// NodeClientTLS returns a node's TLS configuration for dialing other nodes
// (its node certificate as the client certificate).
func NodeClientTLS(certsDir string) (*tls.Config, error) {
	return clientTLS(certsDir, NodeCertFile, NodeKeyFile)
}

// ClientTLS returns a client's TLS configuration for user.
func ClientTLS(certsDir, user string) (*tls.Config, error) {
	crt, key := ClientCertFiles(user)
	return clientTLS(certsDir, crt, key)
}

func clientTLS(certsDir, crt, key string) (*tls.Config, error) {
	pool, err := caPool(certsDir)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(certsDir, crt), filepath.Join(certsDir, key))
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", crt, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}
