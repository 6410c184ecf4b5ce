package image

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/warmpod/warmpod/integration/testimages"
)

func TestPull(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	plain := busybox(t)
	oci := busybox(t, testimages.WithOCIMediaTypes(), testimages.WithAnnotations(map[string]string{"org.example/k": "v"}),
		testimages.WithUser("33"), testimages.WithExposedPorts("8080/tcp"), testimages.WithVolumes("/data"))
	amd := busybox(t, testimages.WithCmd("echo", "amd64"))
	arm := busybox(t, testimages.WithCmd("echo", "arm64"), testimages.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}))
	index, err := testimages.Index(map[string]v1.Image{"linux/amd64": amd, "linux/arm64/v8": arm})
	if err != nil {
		t.Fatal(err)
	}
	armOnly, err := testimages.Index(map[string]v1.Image{"linux/arm64/v8": arm})
	if err != nil {
		t.Fatal(err)
	}
	push(t, reg, "plain:latest", plain)
	push(t, reg, "oci:v1", oci)
	push(t, reg, "multi:latest", index)
	push(t, reg, "armonly:latest", armOnly)
	host := reg.Addr()

	tests := []struct {
		name         string
		platform     *v1.Platform
		ref          string
		wantImage    v1.Image
		wantTags     []string
		wantDigests  []string
		wantPlatform string
		check        func(t *testing.T, img Image)
	}{
		{
			name: "docker v2 by tag", ref: host + "/plain:latest", wantImage: plain,
			wantTags:    []string{host + "/plain:latest"},
			wantDigests: []string{host + "/plain@" + digestOf(t, plain)},
			check: func(t *testing.T, img Image) {
				if !slices.Equal(img.Config.Cmd, []string{"sh"}) || !slices.Equal(img.Config.Env, []string{testimages.DefaultPath}) {
					t.Errorf("config = %+v", img.Config)
				}
				sh, err1 := os.Stat(filepath.Join(img.Layers[0], "bin/sh"))
				bb, err2 := os.Stat(filepath.Join(img.Layers[0], "bin/busybox"))
				if err1 != nil || err2 != nil || !os.SameFile(sh, bb) {
					t.Errorf("bin/sh is not a hardlink of bin/busybox: %v %v", err1, err2)
				}
				if st, err := os.Stat(filepath.Join(img.Layers[0], "tmp")); err != nil || st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
					t.Errorf("tmp mode: %v %v", st, err)
				}
			},
		},
		{
			name: "docker v2 by digest", ref: host + "/plain@" + digestOf(t, plain), wantImage: plain,
			wantDigests: []string{host + "/plain@" + digestOf(t, plain)},
		},
		{
			name: "oci manifest", ref: host + "/oci:v1", wantImage: oci,
			wantTags:    []string{host + "/oci:v1"},
			wantDigests: []string{host + "/oci@" + digestOf(t, oci)},
			check: func(t *testing.T, img Image) {
				if img.Annotations["org.example/k"] != "v" || img.Config.User != "33" ||
					!slices.Equal(img.Config.ExposedPorts, []string{"8080/tcp"}) || !slices.Equal(img.Config.Volumes, []string{"/data"}) {
					t.Errorf("image = %+v", img)
				}
			},
		},
		{
			name: "index picks linux/amd64", ref: host + "/multi:latest", wantImage: amd, wantPlatform: "linux/amd64",
			wantTags:    []string{host + "/multi:latest"},
			wantDigests: []string{host + "/multi@" + digestOf(t, index)},
		},
		{
			name: "index picks configured platform", ref: host + "/multi:latest", wantImage: arm, wantPlatform: "linux/arm64/v8",
			platform:    &v1.Platform{OS: "linux", Architecture: "arm64"},
			wantTags:    []string{host + "/multi:latest"},
			wantDigests: []string{host + "/multi@" + digestOf(t, index)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, func(o *Options) { o.Platform = tc.platform })
			img, err := s.Pull(t.Context(), tc.ref, nil)
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			if img.ID != configDigest(t, tc.wantImage) {
				t.Errorf("ID = %s, want %s", img.ID, configDigest(t, tc.wantImage))
			}
			if !slices.Equal(img.RepoTags, tc.wantTags) || !slices.Equal(img.RepoDigests, tc.wantDigests) {
				t.Errorf("names = %v %v, want %v %v", img.RepoTags, img.RepoDigests, tc.wantTags, tc.wantDigests)
			}
			want := tc.wantPlatform
			if want == "" {
				want = "linux/amd64"
			}
			if img.Platform != want {
				t.Errorf("Platform = %q, want %q", img.Platform, want)
			}
			layers, _ := tc.wantImage.Layers()
			var size int64
			for _, l := range layers {
				n, _ := l.Size()
				size += n
			}
			if img.Size != size {
				t.Errorf("Size = %d, want %d", img.Size, size)
			}
			for i, d := range diffIDs(t, tc.wantImage) {
				if img.Layers[i] != s.layerPath(d) || !exists(img.Layers[i]) {
					t.Errorf("layer %d = %s, want unpacked %s", i, img.Layers[i], s.layerPath(d))
				}
			}
			if got, err := s.Get(tc.ref); err != nil || got.ID != img.ID {
				t.Errorf("Get(%s) = %v, %v", tc.ref, got.ID, err)
			}
			if tc.check != nil {
				tc.check(t, img)
			}
			assertTmpEmpty(t, s)
		})
	}

	t.Run("missing", func(t *testing.T) {
		s := newStore(t)
		for _, ref := range []string{host + "/plain:nosuchtag", host + "/nosuchrepo:latest", host + "/armonly:latest",
			host + "/plain@sha256:" + strings.Repeat("0", 64)} {
			_, err := s.Pull(t.Context(), ref, nil)
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), ref) {
				t.Errorf("Pull(%s) = %v, want ErrNotFound naming the ref", ref, err)
			}
		}
		if _, err := s.Pull(t.Context(), "Not A Ref", nil); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("Pull(bad ref) = %v, want ErrInvalidReference", err)
		}
		if len(s.List()) != 0 || len(layerDirs(t, s)) != 0 {
			t.Errorf("failed pulls left %v %v", s.List(), layerDirs(t, s))
		}
	})
}

func TestPullAuth(t *testing.T) {
	requireRoot(t)
	img := busybox(t)
	basic := startRegistry(t, testimages.WithBasicAuth("alice", "s3cret"))
	token := startRegistry(t, testimages.WithTokenAuth("bob", "hunter2", "refresh-me"))
	push(t, basic, "app:1", img)
	push(t, token, "app:1", img)
	b64 := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))

	tests := []struct {
		name string
		reg  *testimages.Registry
		auth *Auth
		ok   bool
	}{
		{"basic without credentials", basic, nil, false},
		{"basic wrong password", basic, &Auth{Username: "alice", Password: "nope"}, false},
		{"basic user and password", basic, &Auth{Username: "alice", Password: "s3cret"}, true},
		{"basic base64 auth field", basic, &Auth{Auth: b64}, true},
		{"server address matches", basic, &Auth{Username: "alice", Password: "s3cret", ServerAddress: "http://" + basic.Addr() + "/v2/"}, true},
		{"server address of another registry", basic, &Auth{Username: "alice", Password: "s3cret", ServerAddress: "registry.example.com"}, false},
		{"token without credentials", token, nil, false},
		{"token via user and password", token, &Auth{Username: "bob", Password: "hunter2"}, true},
		{"identity token", token, &Auth{IdentityToken: "refresh-me"}, true},
		{"bad identity token", token, &Auth{IdentityToken: "stale"}, false},
		{"registry token", token, &Auth{RegistryToken: token.Token()}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			got, err := s.Pull(t.Context(), tc.reg.Ref("app:1"), tc.auth)
			if tc.ok && (err != nil || got.ID != configDigest(t, img)) {
				t.Fatalf("Pull = %v, %v", got.ID, err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("Pull succeeded without valid credentials")
				}
				if errors.Is(err, ErrNotFound) {
					t.Errorf("auth failure reported as not found: %v", err)
				}
			}
		})
	}
}

// requestLog records the paths a registry served.
type requestLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *requestLog) hook(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, r.Method+" "+r.URL.Path)
}

// gets counts the GET requests whose path contains substr (pushes made by the test itself are HEAD/PUT).
func (l *requestLog) gets(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.paths {
		if strings.HasPrefix(p, "GET ") && strings.Contains(p, substr) {
			n++
		}
	}
	return n
}

func TestPullMirrors(t *testing.T) {
	requireRoot(t)
	upstreamImg := busybox(t, testimages.WithCmd("echo", "upstream"))
	mirror1Img := busybox(t, testimages.WithCmd("echo", "mirror1"))
	mirror2Img := busybox(t, testimages.WithCmd("echo", "mirror2"))
	var upLog, m1Log, m2Log requestLog
	up := startRegistry(t, testimages.WithRequestHook(upLog.hook))
	m1 := startRegistry(t, testimages.WithRequestHook(m1Log.hook))
	m2 := startRegistry(t, testimages.WithRequestHook(m2Log.hook))
	down := startRegistry(t)
	downAddr := down.Addr()
	down.Close()

	push(t, up, "app:1", upstreamImg)
	push(t, up, "only-upstream:1", upstreamImg)
	push(t, m1, "app:1", mirror1Img)
	push(t, m2, "app:1", mirror2Img)
	push(t, m2, "only-m2:1", mirror2Img)

	tests := []struct {
		name    string
		mirrors []string
		ref     string
		want    v1.Image
	}{
		{"first mirror wins", []string{"http://" + m1.Addr(), "http://" + m2.Addr()}, "app:1", mirror1Img},
		{"order is honoured", []string{"http://" + m2.Addr(), "http://" + m1.Addr()}, "app:1", mirror2Img},
		{"unreachable mirror is skipped", []string{"http://" + downAddr, "http://" + m2.Addr()}, "app:1", mirror2Img},
		{"missing on mirror falls back to upstream", []string{"http://" + m1.Addr()}, "only-upstream:1", upstreamImg},
		{"content only on a later mirror", []string{"http://" + m1.Addr(), "http://" + m2.Addr()}, "only-m2:1", mirror2Img},
		{"https mirror never downgrades to http", []string{"https://" + m1.Addr()}, "app:1", upstreamImg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, func(o *Options) { o.Mirrors = map[string][]string{up.Addr(): tc.mirrors} })
			ref := up.Ref(tc.ref)
			img, err := s.Pull(t.Context(), ref, nil)
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			if img.ID != configDigest(t, tc.want) {
				t.Errorf("got image %s, want %s", img.ID, configDigest(t, tc.want))
			}
			// Names are the ref the caller asked for, whichever endpoint served it.
			if !slices.Equal(img.RepoTags, []string{ref}) {
				t.Errorf("RepoTags = %v, want [%s]", img.RepoTags, ref)
			}
		})
	}
	// Only the https-mirror case may reach upstream for app:1; the others are served by mirrors.
	if upLog.gets("/v2/app/manifests/1") != 1 || m1Log.gets("/v2/app/manifests/1") == 0 || m2Log.gets("/v2/only-m2/manifests/1") == 0 {
		t.Errorf("unexpected request pattern: upstream %v", upLog.paths)
	}

	t.Run("not found everywhere", func(t *testing.T) {
		s := newStore(t, func(o *Options) { o.Mirrors = map[string][]string{up.Addr(): {"http://" + m1.Addr()}} })
		_, err := s.Pull(t.Context(), up.Ref("nothere:1"), nil)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), m1.Addr()) {
			t.Errorf("Pull = %v, want ErrNotFound naming each endpoint", err)
		}
	})
}

func TestNetConfig(t *testing.T) {
	t.Run("invalid options", func(t *testing.T) {
		for _, tc := range []struct {
			mirrors  map[string][]string
			insecure []string
		}{
			{mirrors: map[string][]string{"docker.io": {"ftp://m.example"}}},
			{mirrors: map[string][]string{"docker.io": {"https://m.example/v2/prefix"}}},
			{mirrors: map[string][]string{"docker.io": {"http://user:pw@m.example"}}},
			{mirrors: map[string][]string{"": {"http://m.example"}}},
			{insecure: []string{"a host/with path"}},
		} {
			if _, err := newNetConfig(tc.mirrors, tc.insecure); err == nil {
				t.Errorf("newNetConfig(%v, %v) accepted", tc.mirrors, tc.insecure)
			}
		}
	})

	nc, err := newNetConfig(map[string][]string{
		"docker.io":       {"http://10.0.0.9:5000", "m.example"},
		"registry.k8s.io": {"https://127.0.0.1:5443"},
	}, []string{"10.1.2.3:5000", "http://insecure.example"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		registry string
		want     []endpoint
	}{
		{"docker.io", []endpoint{
			{host: "10.0.0.9:5000", plainHTTP: true, mirror: true},
			{host: "m.example", mirror: true},
			{host: "index.docker.io"},
		}},
		{"registry.k8s.io", []endpoint{{host: "127.0.0.1:5443", mirror: true}, {host: "registry.k8s.io"}}},
		{"10.1.2.3:5000", []endpoint{{host: "10.1.2.3:5000", plainHTTP: true, skipTLS: true}}},
		{"10.9.9.9:5000", []endpoint{{host: "10.9.9.9:5000"}}},
		{"insecure.example", []endpoint{{host: "insecure.example", plainHTTP: true, skipTLS: true}}},
		{"localhost:5000", []endpoint{{host: "localhost:5000", plainHTTP: true}}},
		{"[::1]:5000", []endpoint{{host: "[::1]:5000", plainHTTP: true}}},
	}
	for _, tc := range tests {
		if got := nc.endpoints(tc.registry); !slices.Equal(got, tc.want) {
			t.Errorf("endpoints(%s) = %+v, want %+v", tc.registry, got, tc.want)
		}
	}

	// The guard refuses before any connection is made, so these hosts need not exist.
	guard := []struct {
		ep  endpoint
		url string
		ok  bool
	}{
		{endpoint{host: "10.9.9.9:5000"}, "http://10.9.9.9:5000/v2/", false},
		{endpoint{host: "127.0.0.1:5443", mirror: true}, "http://127.0.0.1:5443/v2/", false},
		{endpoint{host: "10.9.9.9:5000"}, "http://auth.example/token", false},
		{endpoint{host: "10.9.9.9:5000"}, "http://insecure.example/token", true},
		{endpoint{host: "10.1.2.3:5000", plainHTTP: true}, "http://10.1.2.3:5000/v2/", true},
	}
	for _, tc := range guard {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		_, err := nc.transport(tc.ep).RoundTrip(req)
		refused := err != nil && strings.Contains(err.Error(), "plain HTTP")
		if refused == tc.ok {
			t.Errorf("%+v GET %s: err = %v, want allowed=%v", tc.ep, tc.url, err, tc.ok)
		}
	}
}

func TestAuthenticatorServerAddress(t *testing.T) {
	a := &Auth{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"}
	for host, want := range map[string]bool{"index.docker.io": true, "docker.io": true, "mirror.example": false} {
		cfg, err := authenticator(a, host).Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Username == "u"; got != want {
			t.Errorf("credential sent to %s: %v, want %v", host, got, want)
		}
	}
}

func TestConcurrentPulls(t *testing.T) {
	requireRoot(t)
	var log requestLog
	reg := startRegistry(t, testimages.WithRequestHook(log.hook))
	a := busybox(t)
	b := busybox(t, testimages.WithFile("/etc/motd", testimages.File{Content: []byte("hi\n"), Mode: 0o644}))
	push(t, reg, "a:1", a)
	push(t, reg, "a:2", a)
	push(t, reg, "b:1", b)
	s := newStore(t)

	refs := []string{"a:1", "a:1", "a:2", "b:1", "a:1", "b:1", "a:2", "b:1"}
	var wg sync.WaitGroup
	errs := make([]error, len(refs))
	for i, r := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Pull(t.Context(), reg.Ref(r), nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %s: %v", refs[i], err)
		}
	}
	if got := len(s.List()); got != 2 {
		t.Errorf("List has %d images, want 2", got)
	}
	want := append(diffIDs(t, a)[:1:1], diffIDs(t, b)[1])
	if got := layerDirs(t, s); len(got) != len(want) {
		t.Errorf("layer dirs = %v, want %d", got, len(want))
	}
	base, _ := a.Layers()
	baseDigest, _ := base[0].Digest()
	if n := log.gets("/blobs/" + baseDigest.String()); n != 1 {
		t.Errorf("shared layer fetched %d times, want once", n)
	}
	assertTmpEmpty(t, s)
}

// TestPullRemoveRace pulls and removes images sharing a layer concurrently: garbage collection must never
// delete a layer an ingest in flight is about to record.
func TestPullRemoveRace(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	push(t, reg, "a:1", busybox(t))
	push(t, reg, "b:1", busybox(t, testimages.WithFile("/b", testimages.File{Content: []byte("b")})))
	s := newStore(t)
	var wg sync.WaitGroup
	for _, r := range []string{"a:1", "b:1", "a:1"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				if _, err := s.Pull(t.Context(), reg.Ref(r), nil); err != nil {
					t.Errorf("pull %s: %v", r, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 30 {
			err := s.Remove(context.Background(), reg.Ref([]string{"a:1", "b:1"}[i%2]))
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Errorf("remove: %v", err)
			}
		}
	}()
	wg.Wait()
	for _, r := range []string{"a:1", "b:1"} {
		if _, err := s.Pull(t.Context(), reg.Ref(r), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, img := range s.List() {
		for _, l := range img.Layers {
			if !exists(l) {
				t.Errorf("image %s lists missing layer %s", img.ID, l)
			}
		}
		if !exists(filepath.Join(img.Layers[0], "bin/busybox")) {
			t.Errorf("image %s base layer is empty", img.ID)
		}
	}
	assertTmpEmpty(t, s)
}
