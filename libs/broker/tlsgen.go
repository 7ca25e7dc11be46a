package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names GenerateTLS writes under its folder.
const (
	TLSCAFile      = "ca.crt"
	TLSCAKeyFile   = "ca.key"
	TLSNodeFile    = "node.crt"
	TLSNodeKeyFile = "node.key"
)

// GenerateTLS writes a new ECDSA P-256 CA and one node certificate signed
// by it into dir. The node certificate names every entry of hosts (DNS
// names or IP addresses). It serves both as server certificate and as the
// client certificate of routes, so one certificate fits every node. Keys
// are written with mode 0600, and both certificates expire after validity.
func GenerateTLS(dir string, hosts []string, validity time.Duration) (TLSFiles, error) {
	files := TLSFiles{
		CA: filepath.Join(dir, TLSCAFile), Cert: filepath.Join(dir, TLSNodeFile),
		Key: filepath.Join(dir, TLSNodeKeyFile),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return files, fmt.Errorf("creating TLS folder %s: %w", dir, err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, fmt.Errorf("generating CA key: %w", err)
	}
	ca := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "NodeX deployment CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return files, fmt.Errorf("signing CA certificate: %w", err)
	}
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, fmt.Errorf("generating node key: %w", err)
	}
	node := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "nodex-broker"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{
			x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth,
		},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			node.IPAddresses = append(node.IPAddresses, ip)
		} else {
			node.DNSNames = append(node.DNSNames, h)
		}
	}
	caCert, _ := x509.ParseCertificate(caDER)
	nodeDER, err := x509.CreateCertificate(rand.Reader, node, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		return files, fmt.Errorf("signing node certificate: %w", err)
	}

	return files, writeTLS(dir, caDER, caKey, nodeDER, nodeKey)
}

func writeTLS(dir string, caDER []byte, caKey *ecdsa.PrivateKey, nodeDER []byte,
	nodeKey *ecdsa.PrivateKey,
) error {
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return fmt.Errorf("encoding CA key: %w", err)
	}
	nodeKeyDER, err := x509.MarshalPKCS8PrivateKey(nodeKey)
	if err != nil {
		return fmt.Errorf("encoding node key: %w", err)
	}
	out := []struct {
		name, kind string
		der        []byte
		mode       os.FileMode
	}{
		{TLSCAFile, "CERTIFICATE", caDER, 0o644},
		{TLSCAKeyFile, "PRIVATE KEY", caKeyDER, 0o600},
		{TLSNodeFile, "CERTIFICATE", nodeDER, 0o644},
		{TLSNodeKeyFile, "PRIVATE KEY", nodeKeyDER, 0o600},
	}
	for _, f := range out {
		data := pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der})
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, data, f.mode); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := os.Chmod(path, f.mode); err != nil {
			return fmt.Errorf("setting mode of %s: %w", path, err)
		}
	}

	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))

	return n
}
