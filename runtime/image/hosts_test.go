package image

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warmpod/warmpod/integration/testimages"
)

// testPKI is a CA made for one test, with a server certificate for 127.0.0.1 and a client certificate,
// written as PEM files into dir.
type testPKI struct {
	dir                           string
	caPEM                         []byte
	pool                          *x509.CertPool
	server                        tls.Certificate
	caFile, clientCert, clientKey string
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warmpod test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, tmpl *x509.Certificate) ([]byte, []byte) {
		k := newKey()
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	srvCert, srvKey := issue(2, &x509.Certificate{
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	})
	cliCert, cliKey := issue(3, &x509.Certificate{
		Subject: pkix.Name{CommonName: "warmpod node"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	})
	server, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: dir, server: server, pool: x509.NewCertPool(),
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	p.pool.AddCert(ca)
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.caFile = write("ca.pem", p.caPEM)
	p.clientCert = write("client.cert", cliCert)
	p.clientKey = write("client.key", cliKey)
	return p
}

// tlsMirror serves backend's registry over TLS under a path prefix: only /prefix/v2/... is answered,
// the way a mirror behind a path-routing proxy is. With requireClient, only clients with a certificate
// of the CA get through.
func tlsMirror(t *testing.T, pki *testPKI, backend, prefix string, requireClient bool, log *requestLog) string {
	t.Helper()
	target, _ := url.Parse("http://" + backend)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.hook(r)
		if !strings.HasPrefix(r.URL.Path, prefix+"/v2") {
			http.NotFound(w, r)
			return
		}
		r.URL.Path = strings.TrimPrefix(r.URL.Path, prefix)
		proxy.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}
	// Refused handshakes are what some cases test; they need not be logged.
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	if requireClient {
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		srv.TLS.ClientCAs = pki.pool
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func writeHostsTOML(t *testing.T, configPath, registry, content string) string {
	t.Helper()
	dir := filepath.Join(configPath, registry)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadHosts(t *testing.T) {
	configPath := t.TempDir()
	pki := newTestPKI(t, t.TempDir())
	nc, err := netConfigOf(Options{ConfigPath: configPath, Insecure: []string{"10.0.0.5:5000"}})
	if err != nil {
		t.Fatal(err)
	}
	writeHostsTOML(t, configPath, "docker.io", fmt.Sprintf(`
server = "https://registry-1.docker.io"

[host."https://mirror-b.example/prefix/"]
  capabilities = ["pull", "resolve"]
  ca = %q

[host."http://mirror-a.example:5000"]
  capabilities = ["pull"]

[host."https://mirror-c.example/custom/api"]
  override_path = true
  skip_verify = true
`, pki.caFile))
	eps, err := nc.resolveEndpoints("docker.io")
	if err != nil {
		t.Fatal(err)
	}
	// File order, the server last.
	type view struct {
		host, root          string
		plain, skip, mirror bool
		noResolve, ownTLS   bool
	}
	var got []view
	for _, e := range eps {
		got = append(got, view{e.host, e.apiRoot, e.plainHTTP, e.skipTLS, e.mirror, e.noResolve, e.rt != nil})
	}
	want := []view{
		{"mirror-b.example", "/prefix/v2", false, false, true, false, true},
		{"mirror-a.example:5000", "", true, false, true, true, false},
		{"mirror-c.example", "/custom/api", false, true, true, false, false},
		{"registry-1.docker.io", "", false, false, false, false, false},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("endpoints\n%+v\nwant\n%+v", got, want)
	}

	// Without hosts.toml, a certs.d directory Docker-style; without a directory of its own, _default; the
	// server defaults to the registry, over HTTP where it is insecure.
	dir := filepath.Join(configPath, "10.0.0.5:5000")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"ca.crt": pki.caFile, "node.cert": pki.clientCert, "node.key": pki.clientKey} {
		data, _ := os.ReadFile(src)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	eps, err = nc.resolveEndpoints("10.0.0.5:5000")
	if err != nil || len(eps) != 1 || eps[0].host != "10.0.0.5:5000" || !eps[0].plainHTTP || eps[0].rt == nil {
		t.Errorf("certs.d directory: %+v, %v", eps, err)
	}
	if eps, err := nc.resolveEndpoints("quay.io"); err != nil || len(eps) != 1 || eps[0].host != "quay.io" || eps[0].mirror {
		t.Errorf("registry without a directory: %+v, %v", eps, err)
	}
	writeHostsTOML(t, configPath, "_default", `[host."https://catch-all.example"]`+"\n")
	if eps, err := nc.resolveEndpoints("quay.io"); err != nil || len(eps) != 2 || eps[0].host != "catch-all.example" || eps[1].host != "quay.io" {
		t.Errorf("_default: %+v, %v", eps, err)
	}

	for name, content := range map[string]string{
		"unknown key":     "servr = \"https://x\"\n",
		"bad capability":  "[host.\"https://m.example\"]\n  capabilities = [\"pull\", \"fly\"]\n",
		"no pull":         "[host.\"https://m.example\"]\n  capabilities = [\"resolve\"]\n",
		"missing ca":      "[host.\"https://m.example\"]\n  ca = \"nope.pem\"\n",
		"not a ca":        "[host.\"https://m.example\"]\n  ca = \"hosts.toml\"\n",
		"ftp":             "[host.\"ftp://m.example\"]\n",
		"credentials":     "[host.\"https://u:p@m.example\"]\n",
		"headers":         "[host.\"https://m.example\".header]\n  x-a = \"b\"\n",
		"bad client pair": "[host.\"https://m.example\"]\n  client = [[\"a\"]]\n",
		"toml syntax":     "server = \n",
		"dotted path":     "[host.\"https://m.example/../x\"]\n",
	} {
		writeHostsTOML(t, configPath, "bad.example", content)
		if _, err := nc.resolveEndpoints("bad.example"); err == nil {
			t.Errorf("%s: hosts.toml %q accepted", name, content)
		}
	}

	// A registry configured in both places is refused rather than guessed at.
	both, err := netConfigOf(Options{ConfigPath: configPath, Mirrors: map[string][]string{"docker.io": {"https://m.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := both.resolveEndpoints("docker.io"); err == nil || !strings.Contains(err.Error(), "configured twice") {
		t.Errorf("mirrors in both places: %v", err)
	}
}

func TestPathRewrite(t *testing.T) {
	var got []string
	rt := &pathRewrite{host: "m.example", root: "/prefix/v2", base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = append(got, r.URL.Host+r.URL.Path)
		return nil, errors.New("stop")
	})}
	for _, u := range []string{"https://m.example/v2/", "https://m.example/v2/lib/app/manifests/1", "https://auth.example/v2/token", "https://m.example/token"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		_, _ = rt.RoundTrip(req)
	}
	want := []string{"m.example/prefix/v2/", "m.example/prefix/v2/lib/app/manifests/1", "auth.example/v2/token", "m.example/token"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paths %v, want %v", got, want)
	}
}

// TestPullThroughHostsTOML pulls through a mirror served over TLS, with a CA and a client certificate
// the test made, under a path prefix, as configured in a hosts.toml.
func TestPullThroughHostsTOML(t *testing.T) {
	requireRoot(t)
	upstreamImg := busybox(t, testimages.WithCmd("echo", "upstream"))
	mirrorImg := busybox(t, testimages.WithCmd("echo", "mirror"))
	up := startRegistry(t)
	backend := startRegistry(t)
	push(t, up, "app:1", upstreamImg)
	// The mirror holds the upstream registry's repositories under the same paths.
	push(t, backend, "app:1", mirrorImg)
	pki := newTestPKI(t, t.TempDir())
	var mirrorLog requestLog
	mirror := tlsMirror(t, pki, backend.Addr(), "/cache/upstream", true, &mirrorLog)

	for _, tc := range []struct {
		name, host string
		want       string // "mirror" or "upstream"
	}{
		{"ca and client certificate", fmt.Sprintf("ca = %q\n  client = [[%q, %q]]", pki.caFile, pki.clientCert, pki.clientKey), "mirror"},
		{"no ca", fmt.Sprintf("client = [[%q, %q]]", pki.clientCert, pki.clientKey), "upstream"},
		{"no client certificate", fmt.Sprintf("ca = %q", pki.caFile), "upstream"},
		{"skip_verify", fmt.Sprintf("skip_verify = true\n  client = [[%q, %q]]", pki.clientCert, pki.clientKey), "mirror"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			configPath := t.TempDir()
			writeHostsTOML(t, configPath, up.Addr(), fmt.Sprintf(`server = "http://%s"

[host."https://%s/cache/upstream"]
  %s
`, up.Addr(), mirror, tc.host))
			s := newStore(t, func(o *Options) { o.ConfigPath = configPath })
			img, err := s.Pull(t.Context(), up.Ref("app:1"), nil)
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			want := map[string]string{"mirror": configDigest(t, mirrorImg), "upstream": configDigest(t, upstreamImg)}[tc.want]
			if img.ID != want {
				t.Errorf("pulled %s, want the %s's image %s", img.ID, tc.want, want)
			}
		})
	}
	if mirrorLog.gets("/cache/upstream/v2/app/manifests/1") == 0 {
		t.Errorf("the mirror was never asked under its prefix: %v", mirrorLog.paths)
	}
}

// TestPullFailsThroughAMirrorWithABadCertificate checks that the failure names the certificate problem.
func TestPullFailsNamingTheCertificate(t *testing.T) {
	requireRoot(t)
	backend := startRegistry(t)
	push(t, backend, "app:1", busybox(t))
	pki := newTestPKI(t, t.TempDir())
	var log requestLog
	mirror := tlsMirror(t, pki, backend.Addr(), "", false, &log)
	configPath := t.TempDir()
	// The mirror is the registry itself here, over TLS with a CA the system does not know.
	writeHostsTOML(t, configPath, mirror, fmt.Sprintf("server = \"https://%s\"\n", mirror))
	s := newStore(t, func(o *Options) { o.ConfigPath = configPath })
	_, err := s.Pull(t.Context(), mirror+"/app:1", nil)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Pull with an unknown CA = %v, want a certificate error", err)
	}
	writeHostsTOML(t, configPath, mirror, fmt.Sprintf("server = \"https://%s\"\nca = %q\n", mirror, pki.caFile))
	if _, err := s.Pull(t.Context(), mirror+"/app:1", nil); err != nil {
		t.Fatalf("Pull once hosts.toml names the CA (read again at each pull): %v", err)
	}
}

func TestAuthFile(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t, testimages.WithBasicAuth("node", "s3cret"))
	push(t, reg, "private:1", busybox(t))
	dir := t.TempDir()
	authFile := filepath.Join(dir, "config.json")
	write := func(pass string) {
		auth := base64.StdEncoding.EncodeToString([]byte("node:" + pass))
		data := fmt.Sprintf(`{"auths": {"http://%s": {"auth": %q}, "other.example": {"username": "x", "password": "y"}}}`, reg.Addr(), auth)
		if err := os.WriteFile(authFile, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("wrong")
	s := newStore(t, func(o *Options) { o.AuthFile = authFile })
	if _, err := s.Pull(t.Context(), reg.Ref("private:1"), nil); err == nil {
		t.Fatal("pull with the wrong password in the auth file succeeded")
	}
	// The file is read at each pull: a rotated credential works without a restart.
	write("s3cret")
	if _, err := s.Pull(t.Context(), reg.Ref("private:1"), nil); err != nil {
		t.Fatalf("pull with the auth file's credential: %v", err)
	}
	// Credentials the pull brings win over the file's.
	write("wrong")
	if _, err := s.Pull(t.Context(), reg.Ref("private:1"), &Auth{Username: "node", Password: "s3cret"}); err != nil {
		t.Fatalf("pull with the request's credential: %v", err)
	}
	if _, err := netConfigOf(Options{AuthFile: filepath.Join(dir, "missing.json")}); err == nil {
		t.Error("a missing auth file was accepted")
	}
	if err := os.WriteFile(authFile, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := netConfigOf(Options{AuthFile: authFile}); err == nil {
		t.Error("a malformed auth file was accepted")
	}
}

// TestPullProgressTimeout pulls from a registry that stops answering blob requests: the pull fails once
// nothing has arrived for the progress timeout, saying so.
func TestPullProgressTimeout(t *testing.T) {
	requireRoot(t)
	release := make(chan struct{})
	var once sync.Once
	stall := func(r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
			<-release
		}
	}
	reg := startRegistry(t, testimages.WithRequestHook(stall))
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	push(t, reg, "stalled:1", busybox(t))
	s := newStore(t, func(o *Options) { o.PullProgressTimeout = 300 * time.Millisecond })
	_, err := s.Pull(t.Context(), reg.Ref("stalled:1"), nil)
	once.Do(func() { close(release) })
	if err == nil || !strings.Contains(err.Error(), "no data received for 300ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pull from a stalled registry = %v, want a progress timeout", err)
	}
	assertTmpEmpty(t, s)
}
