package image

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// netConfig is the validated form of the registry settings of Options plus the HTTP transports pulls
// share (one verifying TLS, one not, and those of hosts with CAs or client certificates of their own), so
// connections are reused across pulls.
type netConfig struct {
	mirrors  map[string][]endpoint // normalised registry host -> mirrors in order
	insecure map[string]bool       // normalised host[:port]
	verified http.RoundTripper
	skipTLS  http.RoundTripper
	// configPath is containerd's hosts directory layout (see hosts.go); "" for none.
	configPath string
	tls        *tlsTransports
	// authFile is a Docker config.json whose credentials pulls use when CRI gives none.
	authFile string
	// progressTimeout fails a pull that makes no progress for that long (0: never).
	progressTimeout time.Duration
}

// registries holds the store's current netConfig; Reconfigure replaces it while pulls run, each pull keeping
// the one it started with.
type registries struct{ p atomic.Pointer[netConfig] }

func (r *registries) get() *netConfig  { return r.p.Load() }
func (r *registries) set(nc netConfig) { r.p.Store(&nc) }

// Reconfigure applies the registry settings of opts (Mirrors, Insecure) to the pulls that start from now on;
// pulls already running finish with the settings they started with. The other fields of opts are ignored:
// the root and platform of a store do not change. On error nothing changes.
func (s *Store) Reconfigure(opts Options) error {
	nc, err := netConfigOf(opts)
	if err != nil {
		return fmt.Errorf("reconfigure image store: %w", err)
	}
	s.net.set(nc)
	return nil
}

// netConfigOf validates the registry settings of opts.
func netConfigOf(opts Options) (netConfig, error) {
	nc, err := newNetConfig(opts.Mirrors, opts.Insecure)
	if err != nil {
		return netConfig{}, err
	}
	if opts.ConfigPath != "" {
		st, err := os.Stat(opts.ConfigPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return netConfig{}, fmt.Errorf("registry config path: %w", err)
		}
		if err == nil && !st.IsDir() {
			return netConfig{}, fmt.Errorf("registry config path %s is not a directory", opts.ConfigPath)
		}
		nc.configPath = opts.ConfigPath
	}
	if opts.AuthFile != "" {
		if _, err := readAuthFile(opts.AuthFile); err != nil {
			return netConfig{}, err
		}
		nc.authFile = opts.AuthFile
	}
	if opts.PullProgressTimeout < 0 {
		return netConfig{}, fmt.Errorf("pull progress timeout %s is negative", opts.PullProgressTimeout)
	}
	nc.progressTimeout = opts.PullProgressTimeout
	return nc, nil
}

// endpoint is one place to pull a repository from: a mirror or the registry itself.
type endpoint struct {
	host      string // host[:port] as go-containerregistry should address it
	plainHTTP bool   // plain HTTP allowed to host
	skipTLS   bool   // TLS certificate not verified
	mirror    bool
	// apiRoot is where the registry API lives on host when not at /v2 (a mirror's path prefix).
	apiRoot string
	// noResolve: the host may serve content by digest but not turn tags into digests.
	noResolve bool
	// rt is the host's own transport (its CAs, client certificates), nil for the shared ones.
	rt http.RoundTripper
}

func newNetConfig(mirrors map[string][]string, insecure []string) (netConfig, error) {
	nc := netConfig{mirrors: map[string][]endpoint{}, insecure: map[string]bool{}, tls: &tlsTransports{}}
	for _, h := range insecure {
		host := strings.TrimSuffix(stripScheme(strings.TrimSpace(h)), "/")
		if host == "" || strings.ContainsAny(host, "/ ") {
			return netConfig{}, fmt.Errorf("insecure registry %q: want host[:port]", h)
		}
		nc.insecure[normaliseHost(host)] = true
	}
	for reg, eps := range mirrors {
		host := normaliseHost(strings.TrimSpace(reg))
		if host == "" || strings.ContainsAny(host, "/ ") {
			return netConfig{}, fmt.Errorf("mirror registry %q: want host[:port]", reg)
		}
		for _, raw := range eps {
			ep, err := parseMirror(raw)
			if err != nil {
				return netConfig{}, fmt.Errorf("mirror of %s: %w", reg, err)
			}
			ep.skipTLS = nc.insecure[normaliseHost(ep.host)]
			nc.mirrors[host] = append(nc.mirrors[host], ep)
		}
	}
	base, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		return netConfig{}, fmt.Errorf("unexpected default transport %T", remote.DefaultTransport)
	}
	nc.verified = base.Clone()
	skip := base.Clone()
	skip.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for registries the operator listed as insecure
	nc.skipTLS = skip
	return nc, nil
}

func stripScheme(s string) string {
	if _, rest, ok := strings.Cut(s, "://"); ok {
		return rest
	}
	return s
}

// parseMirror reads "http://host[:port]", "https://host[:port]" or "host[:port]" (https). go-containerregistry
// addresses registries by host only, so a path prefix cannot be honoured and is refused rather than ignored.
func parseMirror(raw string) (endpoint, error) {
	s := strings.TrimSpace(raw)
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("endpoint %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return endpoint{}, fmt.Errorf("endpoint %q: scheme %q is neither http nor https", raw, u.Scheme)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return endpoint{}, fmt.Errorf("endpoint %q: want scheme://host[:port] without path, query or credentials", raw)
	}
	return endpoint{host: u.Host, plainHTTP: u.Scheme == "http", mirror: true}, nil
}

// resolveEndpoints lists where to pull from a registry: from its directory in the hosts layout when
// there is one, else from the mirrors and insecure settings.
func (nc *netConfig) resolveEndpoints(registry string) ([]endpoint, error) {
	dir, err := hostsDir(nc.configPath, registry)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nc.endpoints(registry), nil
	}
	if len(nc.mirrors[registry]) > 0 && filepath.Base(dir) != "_default" {
		return nil, fmt.Errorf("registry %s is configured twice, by registry.mirrors and by %s: keep one", registry, dir)
	}
	return nc.loadHosts(dir, registry)
}

// endpoints lists where to pull from a registry: its mirrors in order, then the registry itself.
func (nc netConfig) endpoints(registry string) []endpoint {
	eps := append([]endpoint(nil), nc.mirrors[registry]...)
	host := registry
	if registry == dockerHub {
		host = name.DefaultRegistry
	}
	return append(eps, endpoint{
		host:      host,
		plainHTTP: nc.insecure[registry] || isLoopback(registry),
		skipTLS:   nc.insecure[registry],
	})
}

// transport returns the round tripper for ep. go-containerregistry falls back to plain HTTP on its own for
// loopback and RFC 1918 hosts; the guard narrows that to what the operator allowed.
func (nc netConfig) transport(ep endpoint) http.RoundTripper {
	base := nc.verified
	switch {
	case ep.rt != nil:
		base = ep.rt
	case ep.skipTLS:
		base = nc.skipTLS
	}
	var rt http.RoundTripper = &schemeGuard{base: base, ep: ep, insecure: nc.insecure}
	if ep.apiRoot != "" {
		rt = &pathRewrite{base: rt, host: ep.host, root: ep.apiRoot}
	}
	return rt
}

// display names the endpoint in errors.
func (ep endpoint) display() string {
	if ep.mirror {
		scheme := "https"
		if ep.plainHTTP {
			scheme = "http"
		}
		return "mirror " + scheme + "://" + ep.host + strings.TrimSuffix(ep.apiRoot, "/v2")
	}
	return ep.host
}

// reference is r re-homed on the endpoint's host.
func (ep endpoint) reference(r imageRef) (name.Reference, error) {
	var opts []name.Option
	if ep.plainHTTP {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(ep.host+"/"+r.repoPath, append(opts, name.StrictValidation)...)
	if err != nil {
		return nil, fmt.Errorf("address %s on %s: %w", r.repoPath, ep.host, err)
	}
	if r.isDigest {
		return repo.Digest(r.digest), nil
	}
	return repo.Tag(r.tag), nil
}

// schemeGuard refuses plain-HTTP requests the configuration does not allow: to the endpoint's own host
// only when the endpoint allows it, to any other host (a token realm, a redirect for blobs) only when it is
// loopback or listed insecure.
type schemeGuard struct {
	base     http.RoundTripper
	ep       endpoint
	insecure map[string]bool
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		host := req.URL.Host
		allowed := g.ep.plainHTTP
		if host != g.ep.host {
			allowed = g.insecure[normaliseHost(host)] || isLoopback(host)
		}
		if !allowed {
			return nil, fmt.Errorf("plain HTTP to %s refused: not a loopback host nor listed as an insecure registry", host)
		}
	}
	return g.base.RoundTrip(req)
}

// isLoopback reports whether host[:port] names this machine.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authenticator turns a CRI credential into one for host. A credential bound to a ServerAddress is only
// sent to that registry, so credentials for docker.io never leak to a mirror run by someone else.
func authenticator(a *Auth, host string) authn.Authenticator {
	if a == nil || *a == (Auth{ServerAddress: a.ServerAddress}) {
		return authn.Anonymous
	}
	if a.ServerAddress != "" && normaliseHost(serverHost(a.ServerAddress)) != normaliseHost(host) {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		Auth:          a.Auth,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	})
}

// serverHost extracts host[:port] from a server address as kubelets and docker configs write it:
// "https://index.docker.io/v1/", "registry.example.com", "10.0.0.5:5000/v2".
func serverHost(addr string) string {
	host, _, _ := strings.Cut(stripScheme(strings.TrimSpace(addr)), "/")
	return host
}
