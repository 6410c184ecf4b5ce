package testimages

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// CritestImage is one image the CRI validation suite (critest v1.37) pulls: Ref as critest names it and the
// look-alike served under it, a v1.Image or a v1.ImageIndex (the upstream cri-tools test images are
// multi-arch indexes).
type CritestImage struct {
	Ref    string
	Object any
}

// LibDirs are where the shared objects of a dynamically linked busybox are looked up, in order; they are
// also directories the dynamic loader searches by default, so the libraries load from the same paths in the
// image without an ld.so.cache.
var LibDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// IDPath is the host's coreutils id, the set-user-ID program of the nonewprivs look-alike.
var IDPath = "/usr/bin/id"

// critestPasswd and critestGroup are the users and groups of the official busybox image, which every
// upstream test image derives from (the suite runs as www-data and nobody, by name and by id).
const (
	critestPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n" +
		"bin:x:2:2:bin:/bin:/bin/false\n" +
		"sys:x:3:3:sys:/dev:/bin/false\n" +
		"sync:x:4:100:sync:/bin:/bin/sync\n" +
		"mail:x:8:8:mail:/var/spool/mail:/bin/false\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"operator:x:37:37:Operator:/var:/bin/false\n" +
		"nobody:x:65534:65534:nobody:/home:/bin/false\n"
	critestGroup = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\nlp:x:7:\n" +
		"mail:x:8:\nkmem:x:9:\nwheel:x:10:root\ncdrom:x:11:\ndialout:x:18:\nfloppy:x:19:\nvideo:x:28:\n" +
		"audio:x:29:\ntape:x:32:\nwww-data:x:33:\noperator:x:37:\nutmp:x:43:\nplugdev:x:46:\nstaff:x:50:\n" +
		"lock:x:54:\nnetdev:x:82:\nusers:x:100:\nnogroup:x:65534:\n"
)

// StandaloneShell reports whether the shell of the busybox at bin runs applets in-process instead of
// executing them as files (FEATURE_SH_STANDALONE, as in Debian's busybox-static). Such a shell still runs
// `ls` when /bin/ls is masked, so critest's MaskedPaths spec cannot pass on images built from it.
func StandaloneShell(bin string) (bool, error) {
	cmd := exec.Command(bin, "sh", "-c", "ls / >/dev/null 2>&1")
	cmd.Env = []string{"PATH=/nonexistent"}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit):
		return false, nil
	default:
		return false, fmt.Errorf("probe the shell of %s: %w", bin, err)
	}
}

// CritestImages builds a look-alike of every image critest v1.37 pulls (its validation specs and its
// benchmarks), from the busybox at bin: the same users, groups, files, ports, entrypoints and stop signals,
// with busybox httpd serving where nginx and httpd do. bin may be dynamically linked (Debian's "busybox"
// package, whose shell executes applets as files, like the official busybox image's); its shared objects
// are copied from LibDirs. Images are returned in Ref order and are reproducible on one host.
func CritestImages(bin string) ([]CritestImage, error) {
	body, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoBusybox, err)
	}
	base, err := critestBaseLayer(bin, body)
	if err != nil {
		return nil, err
	}
	b := critestBuilder{base: base, busybox: body}
	var out []CritestImage
	add := func(obj any, err error, refs ...string) error {
		if err != nil {
			return fmt.Errorf("build look-alike of %s: %w", refs[0], err)
		}
		for _, r := range refs {
			out = append(out, CritestImage{Ref: r, Object: obj})
		}
		return nil
	}
	const e2e, staging = "registry.k8s.io/e2e-test-images/", "gcr.io/k8s-staging-cri-tools/"
	busybox, err := b.image(nil, WithCmd("sh"))
	if err := add(busybox, err, e2e+"busybox:1.29-2", "docker.io/library/busybox:latest"); err != nil {
		return nil, err
	}
	nginx, err := b.nginx(80, "SIGTERM")
	if err := add(nginx, err, e2e+"nginx:1.14-2"); err != nil {
		return nil, err
	}
	hostnet, err := b.nginx(12003, "SIGQUIT")
	if err := add(hostnet, err, staging+"hostnet-nginx-amd64:latest"); err != nil {
		return nil, err
	}
	httpd, err := b.httpd()
	if err := add(httpd, err, e2e+"httpd:2.4.39-4"); err != nil {
		return nil, err
	}
	nnp, err := b.nonewprivs(IDPath)
	if err := add(nnp, err, e2e+"nonewprivs:1.3"); err != nil {
		return nil, err
	}
	pause, err := b.pause()
	if err := add(pause, err, "registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9", "registry.k8s.io/pause:3.10"); err != nil {
		return nil, err
	}
	// cri-tools' images/build: busybox with a USER, with an empty file named after the image (or the tag, or
	// "same-image" for the three tags of one image), and with a user in a group defined in the image.
	for name, user := range map[string]string{
		"test-image-user-uid": "1002", "test-image-user-username": "www-data",
		"test-image-user-uid-group": "1003:1004", "test-image-user-username-group": "www-data:1004",
	} {
		idx, err := b.index(nil, WithUser(user))
		if err := add(idx, err, staging+name+":latest"); err != nil {
			return nil, err
		}
	}
	predefined, err := b.predefinedGroup()
	if err := add(predefined, err, staging+"test-image-predefined-group:latest"); err != nil {
		return nil, err
	}
	for _, name := range []string{"test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"} {
		idx, err := b.index(emptyFile(name))
		if err := add(idx, err, staging+name+":latest"); err != nil {
			return nil, err
		}
	}
	same, err := b.index(emptyFile("same-image"))
	if err := add(same, err, staging+"test-image-tags:1", staging+"test-image-tags:2", staging+"test-image-tags:3"); err != nil {
		return nil, err
	}
	for _, tag := range []string{"test", "all"} {
		idx, err := b.index(emptyFile(tag))
		if err := add(idx, err, staging+"test-image-tag:"+tag); err != nil {
			return nil, err
		}
	}
	// The image benchmarks list these; "1" and "1-uclibc" are one image upstream.
	for _, tags := range [][]string{{"1", "1-uclibc"}, {"1-glibc"}, {"1.35.0-glibc"}, {"1-musl"}} {
		img, err := b.image(nil, WithCmd("sh"), WithLabels(map[string]string{"io.warmpod.test.variant": tags[0]}))
		refs := make([]string, len(tags))
		for i, t := range tags {
			refs[i] = "public.ecr.aws/docker/library/busybox:" + t
		}
		if err := add(img, err, refs...); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// critestBuilder assembles images on one base layer. Programs that must run under another name than an
// applet's are copies of busybox in the image's own layer: a hard link may only name a file of its layer.
type critestBuilder struct {
	base    v1.Layer
	busybox []byte
}

// copyBusybox adds a copy of busybox at name.
func (b critestBuilder) copyBusybox(t *tree, name string, mode int64) {
	t.add(Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}, Body: b.busybox})
}

// image is the base layer, then the layer t holds (if any), with opts applied to a config like the
// official busybox image's.
func (b critestBuilder) image(t *tree, opts ...Option) (v1.Image, error) {
	c := newImageConfig(opts)
	layers := []v1.Layer{b.base}
	if t != nil {
		l, err := t.layer()
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return assemble(c, layers)
}

// index is image for linux/amd64 in an index that also lists an arm64 variant, so a pull must pick the
// platform, as with the upstream multi-arch images. (The arm64 entry still holds amd64 binaries.)
func (b critestBuilder) index(t *tree, opts ...Option) (v1.ImageIndex, error) {
	amd64, err := b.image(t, opts...)
	if err != nil {
		return nil, err
	}
	arm64, err := b.image(t, append(opts, WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}))...)
	if err != nil {
		return nil, err
	}
	return Index(map[string]v1.Image{"linux/amd64": amd64, "linux/arm64/v8": arm64})
}

func emptyFile(name string) *tree {
	t := newTree()
	t.file(name, 0o644, "")
	return t
}

// nginx listens on port and stops on stopSignal; /usr/sbin/nginx is busybox (see nginxEntrypoint).
func (b critestBuilder) nginx(port int, stopSignal string) (v1.Image, error) {
	t := newTree()
	b.copyBusybox(t, "usr/sbin/nginx", 0o755)
	t.file("docker-entrypoint.sh", 0o755, nginxEntrypoint)
	t.file("usr/lib/nginx/master.sh", 0o644, nginxMaster)
	t.file("etc/nginx/conf.d/default.conf", 0o644, fmt.Sprintf(
		"server {\n    listen       %d;\n    server_name  localhost;\n    location / {\n"+
			"        root   /usr/share/nginx/html;\n        index  index.html index.htm;\n    }\n}\n", port))
	t.file("usr/share/nginx/html/index.html", 0o644, nginxIndex)
	t.dir("var/run", 0o755)
	t.dir("var/cache/nginx", 0o755)
	return b.image(t, WithEntrypoint("/docker-entrypoint.sh"), WithCmd("nginx", "-g", "daemon off;"),
		WithExposedPorts("80/tcp"), WithStopSignal(stopSignal), WithEnv("NGINX_VERSION=lookalike"))
}

func (b critestBuilder) httpd() (v1.Image, error) {
	const prefix = "usr/local/apache2"
	t := newTree()
	b.copyBusybox(t, prefix+"/bin/httpd", 0o755)
	t.file(prefix+"/htdocs/index.html", 0o644, httpdIndex)
	t.dir(prefix+"/logs", 0o755)
	t.file("usr/local/bin/httpd-foreground", 0o755, httpdForeground)
	return b.image(t, WithCmd("httpd-foreground"), WithWorkingDir("/"+prefix), WithExposedPorts("80/tcp"),
		WithStopSignal("SIGWINCH"),
		WithEnv("HTTPD_PREFIX=/"+prefix, "PATH=/"+prefix+"/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
}

// nonewprivs runs nnp as uid 1000; nnp reports the effective uid of a set-user-ID root copy of id (a
// program of the host, with the shared objects it needs).
func (b critestBuilder) nonewprivs(id string) (v1.Image, error) {
	body, err := os.ReadFile(id)
	if err != nil {
		return nil, fmt.Errorf("read id: %w", err)
	}
	libs, err := sharedObjects(id)
	if err != nil {
		return nil, err
	}
	t := newTree()
	t.add(Entry{Header: tar.Header{Name: "usr/local/libexec/nnp/id", Typeflag: tar.TypeReg, Mode: 0o4755}, Body: body})
	if err := addFiles(t, libs, 0o755); err != nil {
		return nil, err
	}
	t.file("usr/local/bin/nnp", 0o755, nnpScript)
	return b.image(t, WithCmd("/usr/local/bin/nnp"), WithUser("1000"))
}

// addFiles copies host files into t at the same paths; one the base layer already holds is written again
// with the same content, which is harmless.
func addFiles(t *tree, paths []string, mode int64) error {
	for _, p := range paths {
		body, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		t.add(Entry{Header: tar.Header{Name: strings.TrimPrefix(p, "/"), Typeflag: tar.TypeReg, Mode: mode}, Body: body})
	}
	return nil
}

func (b critestBuilder) pause() (v1.Image, error) {
	t := newTree()
	t.file("pause", 0o755, pauseScript)
	return b.image(t, WithEntrypoint("/pause"), WithCmd(), WithUser("65535:65535"))
}

// predefinedGroup is cri-tools' image-predefined-group: `adduser -u 1000 -D default-user`, `addgroup -g
// 50000 group-defined-in-image`, `addgroup default-user group-defined-in-image`, USER 1000.
func (b critestBuilder) predefinedGroup() (v1.ImageIndex, error) {
	t := newTree()
	t.file("etc/passwd", 0o644, critestPasswd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")
	t.file("etc/group", 0o644, critestGroup+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")
	t.add(Entry{Header: tar.Header{Name: "home/default-user/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 1000, Gid: 1000}})
	return b.index(t, WithUser("1000"))
}

// critestBaseLayer is the official busybox image's filesystem: every applet linked in /bin, its users and
// groups, and the shared objects bin needs; pgrep and ipcs, which the suite runs, are scripts when bin
// lacks the applets.
func critestBaseLayer(bin string, body []byte) (v1.Layer, error) {
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%w: list applets of %s: %w", ErrNoBusybox, bin, err)
	}
	applets := map[string]bool{}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets[a] = true
		}
	}
	libs, err := sharedObjects(bin)
	if err != nil {
		return nil, err
	}
	t := newTree()
	t.dir("bin", 0o755)
	t.add(Entry{Header: tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, Body: body})
	names := make([]string, 0, len(applets))
	for a := range applets {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		t.hardlink("bin/"+a, "bin/busybox")
	}
	for _, s := range []struct{ name, body string }{{"ipcs", ipcsScript}, {"pgrep", pgrepScript}} {
		if !applets[s.name] {
			t.file("bin/"+s.name, 0o755, s.body)
		}
	}
	if err := addFiles(t, libs, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name string
		mode int64
	}{{"dev", 0o755}, {"home", 0o755}, {"proc", 0o555}, {"root", 0o700}, {"sys", 0o555}, {"tmp", 0o1777},
		{"usr/sbin", 0o755}, {"var/spool/mail", 0o755}, {"var/www", 0o755}} {
		t.dir(d.name, d.mode)
	}
	t.file("etc/passwd", 0o644, critestPasswd)
	t.file("etc/group", 0o644, critestGroup)
	t.file("etc/nsswitch.conf", 0o644, "passwd: files\ngroup: files\nhosts: files dns\n")
	return t.layer()
}

// sharedObjects lists the dynamic loader and every library bin needs, transitively, as paths found in
// LibDirs; it returns nothing for a static binary.
func sharedObjects(bin string) ([]string, error) {
	interp, needed, err := elfDeps(bin)
	if err != nil {
		return nil, err
	}
	if interp == "" {
		return nil, nil
	}
	found := map[string]string{}
	queue := needed
	for len(queue) > 0 {
		lib := queue[0]
		queue = queue[1:]
		if _, ok := found[lib]; ok {
			continue
		}
		p, err := findLib(lib)
		if err != nil {
			return nil, fmt.Errorf("shared object %s of %s: %w", lib, bin, err)
		}
		found[lib] = p
		_, more, err := elfDeps(p)
		if err != nil {
			return nil, err
		}
		queue = append(queue, more...)
	}
	out := []string{interp}
	for _, p := range found {
		if p != interp {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func elfDeps(file string) (interp string, needed []string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", nil, fmt.Errorf("read ELF headers of %s: %w", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			buf := make([]byte, p.Filesz)
			if _, err := p.ReadAt(buf, 0); err != nil {
				return "", nil, fmt.Errorf("read interpreter of %s: %w", file, err)
			}
			interp = string(bytes.TrimRight(buf, "\x00"))
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("read needed libraries of %s: %w", file, err)
	}
	return interp, needed, nil
}

func findLib(name string) (string, error) {
	for _, dir := range LibDirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(LibDirs, ", "))
}

// tree collects the entries of one layer, adding each missing parent directory (0755 root:root) before
// the first entry below it.
type tree struct {
	entries []Entry
	seen    map[string]bool
}

func newTree() *tree { return &tree{seen: map[string]bool{}} }

func (t *tree) add(e Entry) {
	name := strings.TrimSuffix(e.Header.Name, "/")
	for _, d := range parents(name) {
		if !t.seen[d] {
			t.seen[d] = true
			t.entries = append(t.entries, Entry{Header: tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}})
		}
	}
	t.seen[name] = true
	t.entries = append(t.entries, e)
}

func (t *tree) dir(name string, mode int64) {
	t.add(Entry{Header: tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode}})
}

func (t *tree) file(name string, mode int64, body string) {
	t.add(Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}, Body: []byte(body)})
}

// hardlink links name to target, a file of this layer (as busybox's applet links do).
func (t *tree) hardlink(name, target string) {
	t.add(Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: path.Clean(target), Mode: 0o755}})
}

func (t *tree) layer() (v1.Layer, error) { return LayerFromEntries(t.entries...) }
