package image

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
	"github.com/google/go-containerregistry/pkg/name"
)

// Registry host configuration in containerd's layout (its hosts.toml, "config_path"): a directory per
// registry host, named host[:port] ("docker.io", "registry.example.com:5000"), or "_default" for every
// registry without one, holding a hosts.toml:
//
//	server = "https://registry.example.com"   # the registry itself (default: https://<host>)
//	ca = "ca.pem"                              # or a list; relative paths are relative to the directory
//
//	[host."https://mirror.example.com/prefix"] # mirrors, tried in the order they are written
//	  capabilities = ["pull", "resolve"]        # "resolve": may turn tags into digests
//	  ca = ["mirror-ca.pem"]
//	  client = [["client.cert", "client.key"]] # or "client.pem" (certificate and key in one file)
//	  skip_verify = false
//	  override_path = false                    # true: the URL's path is the API root, no /v2 added
//
// A directory without hosts.toml is read the way Docker reads /etc/docker/certs.d: *.crt files are CAs and
// each *.cert with its *.key a client certificate, for the registry itself. A host's path is a prefix the
// registry API lives under: "https://mirror.example.com/prefix" is reached at /prefix/v2/.
//
// The directory of a registry is read at every pull, so that changes take effect without a restart.

// hostsFile is a hosts.toml.
type hostsFile struct {
	hostFields
	Server string                `toml:"server"`
	Host   map[string]hostFields `toml:"host"`
}

// hostFields are the settings of the server or of one [host."..."] table.
type hostFields struct {
	Capabilities []string `toml:"capabilities"`
	// CA is a path or a list of paths.
	CA any `toml:"ca"`
	// Client is a path to a certificate and key in one file, a [cert, key] pair, or a list of either.
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	OverridePath bool           `toml:"override_path"`
	Header       map[string]any `toml:"header"`
}

// hostsDir finds the directory configuring registry under configPath, "" when there is none.
func hostsDir(configPath, registry string) (string, error) {
	if configPath == "" {
		return "", nil
	}
	names := []string{registry}
	if registry == dockerHub {
		names = append(names, name.DefaultRegistry, "registry-1.docker.io")
	}
	names = append(names, "_default")
	for _, n := range names {
		if strings.ContainsAny(n, "/\x00") || n == "." || n == ".." {
			continue
		}
		dir := filepath.Join(configPath, n)
		st, err := os.Stat(dir)
		switch {
		case err == nil && st.IsDir():
			return dir, nil
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("registry host config %s: %w", dir, err)
		}
	}
	return "", nil
}

// loadHosts reads the endpoints of registry from dir: its mirrors in order, then the registry itself.
func (nc *netConfig) loadHosts(dir, registry string) ([]endpoint, error) {
	hf := hostsFile{}
	var order []string
	data, err := os.ReadFile(filepath.Join(dir, "hosts.toml"))
	switch {
	case err == nil:
		md, err := toml.Decode(string(data), &hf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "hosts.toml"), err)
		}
		if undec := md.Undecoded(); len(undec) > 0 {
			var bad []string
			for _, k := range undec {
				// Headers are free-form; anything else is a mistake.
				if !slices.Contains(k, "header") {
					bad = append(bad, k.String())
				}
			}
			if len(bad) > 0 {
				return nil, fmt.Errorf("%s: unknown keys %v", filepath.Join(dir, "hosts.toml"), bad)
			}
		}
		// The order of the [host."..."] tables is the order mirrors are tried in.
		for _, k := range md.Keys() {
			if len(k) >= 2 && k[0] == "host" && !slices.Contains(order, k[1]) {
				order = append(order, k[1])
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := dockerCertsDir(dir, &hf.hostFields); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("registry host config: %w", err)
	}

	var eps []endpoint
	for _, raw := range order {
		ep, err := nc.hostEndpoint(dir, raw, hf.Host[raw], true)
		if err != nil {
			return nil, fmt.Errorf("%s: host %q: %w", filepath.Join(dir, "hosts.toml"), raw, err)
		}
		eps = append(eps, ep)
	}
	server := hf.Server
	if server == "" {
		host := registry
		if registry == dockerHub {
			host = "registry-1.docker.io"
		}
		server = "https://" + host
		if nc.insecure[registry] || isLoopback(registry) {
			server = "http://" + host
		}
	}
	ep, err := nc.hostEndpoint(dir, server, hf.hostFields, false)
	if err != nil {
		return nil, fmt.Errorf("%s: server %q: %w", filepath.Join(dir, "hosts.toml"), server, err)
	}
	return append(eps, ep), nil
}

// dockerCertsDir fills h from a Docker-style certs.d directory: *.crt are CAs, *.cert/*.key pairs client
// certificates.
func dockerCertsDir(dir string, h *hostFields) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("registry host config: %w", err)
	}
	var cas []any
	var clients []any
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, ".crt"):
			cas = append(cas, n)
		case strings.HasSuffix(n, ".cert"):
			key := strings.TrimSuffix(n, ".cert") + ".key"
			if _, err := os.Stat(filepath.Join(dir, key)); err != nil {
				return fmt.Errorf("registry host config %s: client certificate %s has no %s", dir, n, key)
			}
			clients = append(clients, []any{n, key})
		}
	}
	if len(cas) > 0 {
		h.CA = cas
	}
	if len(clients) > 0 {
		h.Client = clients
	}
	return nil
}

// hostEndpoint turns one host of a hosts directory into an endpoint.
func (nc *netConfig) hostEndpoint(dir, raw string, h hostFields, mirror bool) (endpoint, error) {
	s := strings.TrimSpace(raw)
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return endpoint{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return endpoint{}, fmt.Errorf("scheme %q is neither http nor https", u.Scheme)
	}
	if u.Host == "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return endpoint{}, errors.New("want scheme://host[:port][/path] without query or credentials")
	}
	root := strings.TrimSuffix(u.Path, "/")
	if !h.OverridePath {
		root += "/v2"
	}
	if !strings.HasPrefix(root, "/") || strings.Contains(root, "/../") || strings.HasSuffix(root, "/..") {
		return endpoint{}, fmt.Errorf("path %q is not a clean absolute path", u.Path)
	}
	ep := endpoint{host: u.Host, plainHTTP: u.Scheme == "http", mirror: mirror}
	if root != "/v2" {
		ep.apiRoot = root
	}
	if h.Capabilities != nil {
		ep.noResolve = !slices.Contains(h.Capabilities, "resolve")
		for _, c := range h.Capabilities {
			switch c {
			case "pull", "resolve", "push":
			default:
				return endpoint{}, fmt.Errorf("capability %q: want pull, resolve or push", c)
			}
		}
		if !slices.Contains(h.Capabilities, "pull") {
			return endpoint{}, errors.New("a host without the pull capability cannot serve pulls")
		}
	}
	if h.SkipVerify != nil {
		ep.skipTLS = *h.SkipVerify
	}
	if len(h.Header) > 0 {
		return endpoint{}, errors.New("header is not supported by warmpod")
	}
	cas, err := pathList(h.CA)
	if err != nil {
		return endpoint{}, fmt.Errorf("ca: %w", err)
	}
	clients, err := clientPairs(h.Client)
	if err != nil {
		return endpoint{}, fmt.Errorf("client: %w", err)
	}
	if len(cas) > 0 || len(clients) > 0 {
		rt, err := nc.tlsTransport(dir, cas, clients, ep.skipTLS)
		if err != nil {
			return endpoint{}, err
		}
		ep.rt = rt
	}
	return ep, nil
}

// pathList reads a string or a list of strings.
func pathList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		var out []string
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want a path or a list of paths, got %v", v)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a path or a list of paths, got %v", v)
}

// clientPairs reads client certificates: "both.pem", ["cert", "key"], or a list of either. A single path
// holds certificate and key.
func clientPairs(v any) ([][2]string, error) {
	bad := fmt.Errorf("want a path, a [certificate, key] pair or a list of them, got %v", v)
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return [][2]string{{v, v}}, nil
	case []any:
		if len(v) == 2 {
			c, ok1 := v[0].(string)
			k, ok2 := v[1].(string)
			if ok1 && ok2 && !strings.HasSuffix(k, ".cert") && !strings.HasSuffix(k, ".crt") {
				return [][2]string{{c, k}}, nil
			}
		}
		var out [][2]string
		for _, e := range v {
			switch e := e.(type) {
			case string:
				out = append(out, [2]string{e, e})
			case []any:
				if len(e) != 2 {
					return nil, bad
				}
				c, ok1 := e[0].(string)
				k, ok2 := e[1].(string)
				if !ok1 || !ok2 {
					return nil, bad
				}
				out = append(out, [2]string{c, k})
			default:
				return nil, bad
			}
		}
		return out, nil
	}
	return nil, bad
}

// tlsTransports caches the transports of hosts with their own CAs or client certificates, by the
// content of those files and the skip_verify setting, so that pulls reuse connections and a changed
// file makes a new transport.
type tlsTransports struct {
	mu sync.Mutex
	m  map[string]http.RoundTripper
}

func (nc *netConfig) tlsTransport(dir string, cas []string, clients [][2]string, skip bool) (http.RoundTripper, error) {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	h := sha256.New()
	fmt.Fprintf(h, "skip=%t\n", skip)
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, p := range cas {
		pem, err := os.ReadFile(abs(p))
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate in it", abs(p))
		}
		h.Write(pem)
	}
	var certs []tls.Certificate
	for _, pair := range clients {
		certPEM, err := os.ReadFile(abs(pair[0]))
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		keyPEM, err := os.ReadFile(abs(pair[1]))
		if err != nil {
			return nil, fmt.Errorf("client key: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s: %w", abs(pair[0]), err)
		}
		certs = append(certs, cert)
		h.Write(certPEM)
		h.Write(keyPEM)
	}
	key := hex.EncodeToString(h.Sum(nil))
	nc.tls.mu.Lock()
	defer nc.tls.mu.Unlock()
	if rt, ok := nc.tls.m[key]; ok {
		return rt, nil
	}
	base, ok := nc.verified.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("unexpected base transport %T", nc.verified)
	}
	t := base.Clone()
	t.TLSClientConfig = &tls.Config{
		RootCAs:            pool,
		Certificates:       certs,
		InsecureSkipVerify: skip, //nolint:gosec // only where the operator's hosts.toml says skip_verify
		MinVersion:         tls.VersionTLS12,
	}
	if nc.tls.m == nil {
		nc.tls.m = map[string]http.RoundTripper{}
	}
	nc.tls.m[key] = t
	return t, nil
}

// pathRewrite sends requests for the registry API (/v2/...) on host to the API root the host
// configuration names (a mirror's path prefix); other requests, such as a token realm, pass as they are.
type pathRewrite struct {
	base http.RoundTripper
	host string
	root string
}

func (p *pathRewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == p.host && (req.URL.Path == "/v2" || strings.HasPrefix(req.URL.Path, "/v2/")) {
		req = req.Clone(req.Context())
		req.URL.Path = p.root + strings.TrimPrefix(req.URL.Path, "/v2")
		req.URL.RawPath = ""
	}
	return p.base.RoundTrip(req)
}
