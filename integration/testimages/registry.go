package testimages

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Registry is an in-memory OCI distribution registry served over plain HTTP on a loopback address.
// Tests push the images they built and point the code under test at Addr().
type Registry struct {
	addr  string
	srv   *http.Server
	auth  registryConfig
	token string
	done  chan struct{}
}

// RegistryOption configures StartRegistry.
type RegistryOption func(*registryConfig)

type registryConfig struct {
	addr         string
	user, pass   string
	tokenAuth    bool
	refreshToken string
	hook         func(*http.Request)
	wrap         func(http.Handler) http.Handler
	logger       *log.Logger
}

// WithAddr listens on addr ("127.0.0.1:5000") instead of a free loopback port.
func WithAddr(addr string) RegistryOption { return func(c *registryConfig) { c.addr = addr } }

// WithBasicAuth makes every request need HTTP basic auth with user/pass.
func WithBasicAuth(user, pass string) RegistryOption {
	return func(c *registryConfig) { c.user, c.pass = user, pass }
}

// WithTokenAuth makes the registry speak the bearer-token flow: /v2/ answers 401 with a Bearer challenge
// whose realm is the registry's own /token endpoint, which hands out Registry.Token() for basic
// user/pass (GET) or for refreshToken (the OAuth2 POST flow that identity tokens use). A client may also
// send Registry.Token() directly, as CRI's registry_token does.
func WithTokenAuth(user, pass, refreshToken string) RegistryOption {
	return func(c *registryConfig) {
		c.tokenAuth = true
		c.user, c.pass, c.refreshToken = user, pass, refreshToken
	}
}

// WithRequestHook calls hook for every request before it is served (tests count requests with it; it must
// be safe for concurrent use).
func WithRequestHook(hook func(*http.Request)) RegistryOption {
	return func(c *registryConfig) { c.hook = hook }
}

// WithHandler puts wrap's handler in front of the registry: a test can answer some requests itself (a
// blob whose content does not match its digest, a manifest larger than any registry would store) and
// pass the rest on.
func WithHandler(wrap func(next http.Handler) http.Handler) RegistryOption {
	return func(c *registryConfig) { c.wrap = wrap }
}

// WithLogger logs each request to l (by default the registry is silent).
func WithLogger(l *log.Logger) RegistryOption { return func(c *registryConfig) { c.logger = l } }

// StartRegistry starts serving and returns once the listener is open.
func StartRegistry(opts ...RegistryOption) (*Registry, error) {
	cfg := registryConfig{addr: "127.0.0.1:0", logger: log.New(io.Discard, "", 0)}
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("start registry: listen on %s: %w", cfg.addr, err)
	}
	r := &Registry{addr: ln.Addr().String(), auth: cfg, token: "warmpod-test-access-token", done: make(chan struct{})}
	inner := registry.New(registry.Logger(cfg.logger))
	mux := http.NewServeMux()
	mux.HandleFunc("/token", r.serveToken)
	served := inner
	if cfg.wrap != nil {
		served = cfg.wrap(inner)
	}
	mux.Handle("/", r.authenticate(served))
	var h http.Handler = mux
	if cfg.hook != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			cfg.hook(req)
			mux.ServeHTTP(w, req)
		})
	}
	r.srv = &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

// Addr is the host:port the registry serves on; it is also the registry part of every ref it holds.
func (r *Registry) Addr() string { return r.addr }

// Ref turns a repository path ("busybox:latest", "library/busybox@sha256:...") into a full ref on this
// registry.
func (r *Registry) Ref(repo string) string { return r.addr + "/" + repo }

// Token is the bearer token the registry accepts when started WithTokenAuth.
func (r *Registry) Token() string { return r.token }

// Push uploads an image (v1.Image) or a multi-arch index (v1.ImageIndex) under ref, which is either a path
// on this registry ("busybox:latest") or a full ref naming it. It returns the full ref pushed.
func (r *Registry) Push(ref string, obj any) (string, error) {
	full := ref
	if !strings.HasPrefix(ref, r.addr+"/") {
		full = r.Ref(ref)
	}
	parsed, err := name.ParseReference(full, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("push %q: %w", ref, err)
	}
	opts := []remote.Option{remote.WithAuth(r.clientAuth())}
	switch o := obj.(type) {
	case v1.Image:
		err = remote.Write(parsed, o, opts...)
	case v1.ImageIndex:
		err = remote.WriteIndex(parsed, o, opts...)
	default:
		return "", fmt.Errorf("push %q: %T is neither an image nor an index", ref, obj)
	}
	if err != nil {
		return "", fmt.Errorf("push %q: %w", ref, err)
	}
	return full, nil
}

// PushBlob uploads data as a blob of repository repo ("hostile") and returns its digest.
func (r *Registry) PushBlob(repo string, data []byte) (v1.Hash, error) {
	parsed, err := name.NewRepository(r.Ref(repo), name.Insecure)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("push blob to %q: %w", repo, err)
	}
	l := static.NewLayer(data, types.OCILayer)
	if err := remote.WriteLayer(parsed, l, remote.WithAuth(r.clientAuth())); err != nil {
		return v1.Hash{}, fmt.Errorf("push blob to %q: %w", repo, err)
	}
	return l.Digest()
}

// PushManifest uploads raw as a manifest of media type mediaType under ref (a path on this registry) as it
// is, whatever it says: the registry checks nothing. It returns the full ref pushed.
func (r *Registry) PushManifest(ref string, mediaType types.MediaType, raw []byte) (string, error) {
	full := r.Ref(ref)
	parsed, err := name.ParseReference(full, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("push manifest %q: %w", ref, err)
	}
	if err := remote.Put(parsed, rawManifest{raw: raw, mediaType: mediaType}, remote.WithAuth(r.clientAuth())); err != nil {
		return "", fmt.Errorf("push manifest %q: %w", ref, err)
	}
	return full, nil
}

type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// Close stops serving at once, dropping open connections (a graceful shutdown would wait seconds for
// clients' idle probes), and waits for the server goroutine to end.
func (r *Registry) Close() error {
	err := r.srv.Close()
	<-r.done
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stop registry: %w", err)
	}
	return nil
}

func (r *Registry) clientAuth() authn.Authenticator {
	switch {
	case r.auth.tokenAuth:
		return authn.FromConfig(authn.AuthConfig{RegistryToken: r.token})
	case r.auth.user != "":
		return &authn.Basic{Username: r.auth.user, Password: r.auth.pass}
	default:
		return authn.Anonymous
	}
}

func (r *Registry) authenticate(next http.Handler) http.Handler {
	if r.auth.user == "" && !r.auth.tokenAuth {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.auth.tokenAuth {
			if got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok && equal(got, r.token) {
				next.ServeHTTP(w, req)
				return
			}
			w.Header().Set("WWW-Authenticate",
				fmt.Sprintf(`Bearer realm="http://%s/token",service="warmpod-test"`, r.addr))
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
			return
		}
		if u, p, ok := req.BasicAuth(); ok && equal(u, r.auth.user) && equal(p, r.auth.pass) {
			next.ServeHTTP(w, req)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="warmpod-test"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
	})
}

// serveToken is the token endpoint of WithTokenAuth: GET with basic credentials, or the OAuth2 POST with a
// refresh token.
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	if !r.auth.tokenAuth {
		http.NotFound(w, req)
		return
	}
	ok := false
	switch req.Method {
	case http.MethodGet:
		u, p, has := req.BasicAuth()
		ok = has && equal(u, r.auth.user) && equal(p, r.auth.pass)
	case http.MethodPost:
		ok = req.ParseForm() == nil && req.PostForm.Get("grant_type") == "refresh_token" &&
			r.auth.refreshToken != "" && equal(req.PostForm.Get("refresh_token"), r.auth.refreshToken)
	}
	if !ok {
		http.Error(w, "bad credentials", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": r.token, "access_token": r.token})
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
