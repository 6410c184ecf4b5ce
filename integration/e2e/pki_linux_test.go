package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's certificates, written as PEM files in dir: one CA signs the API server's serving
// certificate and one client certificate (group system:masters) that every component and the tests use;
// a separate key signs service account tokens.
type pki struct {
	dir                         string
	caCert                      string
	serverCert, serverKey       string
	clientCert, clientKey       string
	saKey, saPub                string
	caTemplate                  *x509.Certificate
	caKeyPriv                   *ecdsa.PrivateKey
	serialNumber                int64
	notBefore, notAfter         time.Time
	serverIPs                   []net.IP
	serverNames                 []string
	clientCommonName, clientOrg string
}

func newPKI(dir string, serverIPs []net.IP) (*pki, error) {
	p := &pki{
		dir:              dir,
		caCert:           filepath.Join(dir, "ca.crt"),
		serverCert:       filepath.Join(dir, "apiserver.crt"),
		serverKey:        filepath.Join(dir, "apiserver.key"),
		clientCert:       filepath.Join(dir, "admin.crt"),
		clientKey:        filepath.Join(dir, "admin.key"),
		saKey:            filepath.Join(dir, "sa.key"),
		saPub:            filepath.Join(dir, "sa.pub"),
		notBefore:        time.Now().Add(-time.Hour),
		notAfter:         time.Now().Add(24 * time.Hour),
		serverIPs:        serverIPs,
		serverNames:      []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		clientCommonName: "warmpod-e2e-admin",
		clientOrg:        "system:masters",
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	p.caKeyPriv = caKey
	p.caTemplate = &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "warmpod-e2e-ca"},
		NotBefore:             p.notBefore,
		NotAfter:              p.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, p.caTemplate, p.caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if p.caTemplate, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	if err := writePEM(p.caCert, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	p.serialNumber = 1
	if err := p.issue(p.serverCert, p.serverKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: p.serverIPs,
		DNSNames:    p.serverNames,
	}); err != nil {
		return nil, err
	}
	if err := p.issue(p.clientCert, p.clientKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: p.clientCommonName, Organization: []string{p.clientOrg}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(p.saKey, saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p.saPub, "PUBLIC KEY", pub); err != nil {
		return nil, err
	}
	return p, nil
}

// issue signs tmpl with the CA and writes the certificate and a fresh key.
func (p *pki) issue(certPath, keyPath string, tmpl *x509.Certificate) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	p.serialNumber++
	tmpl.SerialNumber = big.NewInt(p.serialNumber)
	tmpl.NotBefore, tmpl.NotAfter = p.notBefore, p.notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caTemplate, &key.PublicKey, p.caKeyPriv)
	if err != nil {
		return err
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
