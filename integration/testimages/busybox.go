package testimages

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is the statically linked busybox the images are built from (Debian's busybox-static).
var BusyboxPath = "/bin/busybox"

// ErrNoBusybox is returned when BusyboxPath is missing or not runnable; tests skip on it with
// "apt-get install busybox-static".
var ErrNoBusybox = errors.New("busybox-static not found (apt-get install busybox-static)")

// DefaultPath is the PATH every image built here carries, the one Docker images conventionally use.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Option changes the image Busybox builds.
type Option func(*imageConfig)

type imageConfig struct {
	cfg         v1.Config
	platform    v1.Platform
	files       map[string]File
	layers      []v1.Layer
	oci         bool
	annotations map[string]string
}

// WithEntrypoint sets the config Entrypoint.
func WithEntrypoint(args ...string) Option {
	return func(c *imageConfig) { c.cfg.Entrypoint = args }
}

// WithCmd sets the config Cmd (default ["sh"]).
func WithCmd(args ...string) Option { return func(c *imageConfig) { c.cfg.Cmd = args } }

// WithEnv adds KEY=VALUE variables; a key that is already set (PATH included) is replaced.
func WithEnv(kv ...string) Option {
	return func(c *imageConfig) {
		for _, e := range kv {
			key, _, _ := strings.Cut(e, "=")
			replaced := false
			for i, old := range c.cfg.Env {
				if k, _, _ := strings.Cut(old, "="); k == key {
					c.cfg.Env[i], replaced = e, true
				}
			}
			if !replaced {
				c.cfg.Env = append(c.cfg.Env, e)
			}
		}
	}
}

// WithUser sets the config User ("33", "www-data", "1000:1000").
func WithUser(user string) Option { return func(c *imageConfig) { c.cfg.User = user } }

// WithWorkingDir sets the config WorkingDir.
func WithWorkingDir(dir string) Option { return func(c *imageConfig) { c.cfg.WorkingDir = dir } }

// WithStopSignal sets the config StopSignal ("SIGUSR1").
func WithStopSignal(sig string) Option { return func(c *imageConfig) { c.cfg.StopSignal = sig } }

// WithLabels adds config labels.
func WithLabels(labels map[string]string) Option {
	return func(c *imageConfig) {
		if c.cfg.Labels == nil {
			c.cfg.Labels = map[string]string{}
		}
		for k, v := range labels {
			c.cfg.Labels[k] = v
		}
	}
}

// WithExposedPorts adds exposed ports ("8080/tcp").
func WithExposedPorts(ports ...string) Option {
	return func(c *imageConfig) {
		if c.cfg.ExposedPorts == nil {
			c.cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			c.cfg.ExposedPorts[p] = struct{}{}
		}
	}
}

// WithVolumes adds config volumes ("/data").
func WithVolumes(paths ...string) Option {
	return func(c *imageConfig) {
		if c.cfg.Volumes == nil {
			c.cfg.Volumes = map[string]struct{}{}
		}
		for _, p := range paths {
			c.cfg.Volumes[p] = struct{}{}
		}
	}
}

// WithFile adds a file (directory, symlink) to one extra layer on top of the busybox layer, so the cached
// base layer stays shared by every image built here.
func WithFile(path string, f File) Option {
	return func(c *imageConfig) {
		if c.files == nil {
			c.files = map[string]File{}
		}
		c.files[path] = f
	}
}

// WithLayers appends layers above the busybox layer (and above the WithFile layer).
func WithLayers(layers ...v1.Layer) Option {
	return func(c *imageConfig) { c.layers = append(c.layers, layers...) }
}

// WithPlatform sets the os/architecture/variant the config claims. The busybox binary stays amd64: this is
// for index and platform-selection tests, not for running on another machine.
func WithPlatform(p v1.Platform) Option { return func(c *imageConfig) { c.platform = p } }

// WithOCIMediaTypes makes the manifest, config and layers use OCI media types instead of Docker v2 ones.
func WithOCIMediaTypes() Option { return func(c *imageConfig) { c.oci = true } }

// WithAnnotations sets manifest annotations (OCI media types are implied: Docker v2 manifests have none).
func WithAnnotations(a map[string]string) Option {
	return func(c *imageConfig) {
		c.oci = true
		c.annotations = a
	}
}

var (
	baseOnce  sync.Once
	baseLayer v1.Layer
	baseErr   error
)

// BusyboxLayer returns the single busybox layer every Busybox image starts with; it is built once per
// process and shared.
func BusyboxLayer() (v1.Layer, error) {
	baseOnce.Do(func() { baseLayer, baseErr = buildBusyboxLayer() })
	return baseLayer, baseErr
}

// Busybox builds a linux/amd64 image: the busybox layer (/bin/busybox, a hardlink per applet in /bin,
// /etc/passwd and /etc/group with root, www-data (33) and nobody, /tmp 1777, /root, /home, an empty
// /etc/hostname), Cmd ["sh"] and the conventional PATH, changed by opts.
func Busybox(opts ...Option) (v1.Image, error) {
	c := newImageConfig(opts)
	base, err := BusyboxLayer()
	if err != nil {
		return nil, err
	}
	layers := []v1.Layer{base}
	if len(c.files) > 0 {
		l, err := filesLayer(c.files)
		if err != nil {
			return nil, fmt.Errorf("build file layer: %w", err)
		}
		layers = append(layers, l)
	}
	layers = append(layers, c.layers...)
	return assemble(c, layers)
}

// newImageConfig is a config like the official busybox image's (Cmd ["sh"], the conventional PATH,
// linux/amd64) with opts applied.
func newImageConfig(opts []Option) imageConfig {
	c := imageConfig{
		cfg:      v1.Config{Cmd: []string{"sh"}, Env: []string{DefaultPath}},
		platform: v1.Platform{OS: "linux", Architecture: "amd64"},
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func assemble(c imageConfig, layers []v1.Layer) (v1.Image, error) {
	img := empty.Image
	if c.oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		mt := types.DockerLayer
		if c.oci {
			mt = types.OCILayer
		}
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: mt})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Config = c.cfg
	cf.OS = c.platform.OS
	cf.Architecture = c.platform.Architecture
	cf.Variant = c.platform.Variant
	cf.Created = v1.Time{Time: Epoch}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	if len(c.annotations) > 0 {
		img = mutate.Annotations(img, c.annotations).(v1.Image)
	}
	return img, nil
}

func buildBusyboxLayer() (v1.Layer, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoBusybox, err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%w: list applets: %w", ErrNoBusybox, err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)

	dir := func(name string, mode int64) Entry {
		return Entry{Header: tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode}}
	}
	file := func(name string, mode int64, body string) Entry {
		return Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}, Body: []byte(body)}
	}
	entries := []Entry{
		dir("bin", 0o755),
		{Header: tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, Body: bin},
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		entries = append(entries, Entry{Header: tar.Header{
			Name: "bin/" + a, Typeflag: tar.TypeLink, Linkname: "bin/busybox", Mode: 0o755,
		}})
	}
	entries = append(entries,
		dir("dev", 0o755),
		dir("etc", 0o755),
		file("etc/group", 0o644, "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"),
		file("etc/hostname", 0o644, ""),
		file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"+
			"www-data:x:33:33:www-data:/var/www:/bin/false\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		dir("home", 0o755),
		dir("proc", 0o555),
		dir("root", 0o700),
		dir("sys", 0o555),
		dir("tmp", 0o1777),
		dir("usr", 0o755),
		dir("usr/local", 0o755),
		dir("usr/local/bin", 0o755),
		dir("var", 0o755),
		dir("var/www", 0o755),
	)
	return LayerFromEntries(entries...)
}
