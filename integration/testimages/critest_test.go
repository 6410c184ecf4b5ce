package testimages

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func critestImages(t *testing.T) map[string]any {
	t.Helper()
	imgs, err := CritestImages(BusyboxPath)
	if errors.Is(err, ErrNoBusybox) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for _, img := range imgs {
		if _, dup := out[img.Ref]; dup {
			t.Errorf("%s built twice", img.Ref)
		}
		out[img.Ref] = img.Object
	}
	return out
}

// amd64 is the image a linux/amd64 node runs for obj.
func amd64(t *testing.T, obj any) v1.Image {
	t.Helper()
	switch o := obj.(type) {
	case v1.Image:
		return o
	case v1.ImageIndex:
		m, err := o.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var platforms []string
		var img v1.Image
		for _, d := range m.Manifests {
			platforms = append(platforms, d.Platform.String())
			if d.Platform.Architecture == "amd64" {
				if img, err = o.Image(d.Digest); err != nil {
					t.Fatal(err)
				}
			}
		}
		slices.Sort(platforms)
		if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64/v8"}) {
			t.Errorf("index platforms %v", platforms)
		}
		return img
	}
	t.Fatalf("%T is neither an image nor an index", obj)
	return nil
}

func digest(t *testing.T, obj any) string {
	t.Helper()
	d, err := Digest(obj)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCritestImagesCoverTheSuite(t *testing.T) {
	imgs := critestImages(t)
	const e2e, staging = "registry.k8s.io/e2e-test-images/", "gcr.io/k8s-staging-cri-tools/"
	// Every image critest v1.37's validation specs and benchmarks pull (pkg/validate/consts*.go,
	// pkg/framework/util.go, pkg/benchmark/image.go).
	for _, ref := range []string{
		e2e + "busybox:1.29-2", e2e + "nginx:1.14-2", e2e + "httpd:2.4.39-4", e2e + "nonewprivs:1.3",
		"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9",
		staging + "test-image-user-uid:latest", staging + "test-image-user-username:latest",
		staging + "test-image-user-uid-group:latest", staging + "test-image-user-username-group:latest",
		staging + "test-image-predefined-group:latest", staging + "test-image-latest:latest",
		staging + "test-image-tag:test", staging + "test-image-tag:all", staging + "test-image-digest:latest",
		staging + "test-image-1:latest", staging + "test-image-2:latest", staging + "test-image-3:latest",
		staging + "test-image-tags:1", staging + "test-image-tags:2", staging + "test-image-tags:3",
		staging + "hostnet-nginx-amd64:latest",
		"public.ecr.aws/docker/library/busybox:1", "public.ecr.aws/docker/library/busybox:1-glibc",
		"public.ecr.aws/docker/library/busybox:1-musl", "public.ecr.aws/docker/library/busybox:1-uclibc",
		"public.ecr.aws/docker/library/busybox:1.35.0-glibc",
	} {
		if imgs[ref] == nil {
			t.Errorf("no look-alike of %s", ref)
		}
	}
	// The suite checks which references name one image and which name different ones.
	same := [][]string{
		{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
		{staging + "test-image-tags:1", staging + "test-image-tags:2", staging + "test-image-tags:3"},
	}
	for _, refs := range same {
		for _, r := range refs[1:] {
			if digest(t, imgs[r]) != digest(t, imgs[refs[0]]) {
				t.Errorf("%s and %s differ", r, refs[0])
			}
		}
	}
	seen := map[string]string{}
	for _, r := range []string{staging + "test-image-1:latest", staging + "test-image-2:latest", staging + "test-image-3:latest",
		staging + "test-image-tag:test", staging + "test-image-tag:all", staging + "test-image-latest:latest"} {
		d := digest(t, imgs[r])
		if prev, ok := seen[d]; ok {
			t.Errorf("%s and %s are one image", r, prev)
		}
		seen[d] = r
	}
	again := critestImages(t)
	for ref, obj := range imgs {
		if digest(t, again[ref]) != digest(t, obj) {
			t.Errorf("%s: two builds differ", ref)
		}
	}
}

func TestCritestImageConfigs(t *testing.T) {
	imgs := critestImages(t)
	const e2e, staging = "registry.k8s.io/e2e-test-images/", "gcr.io/k8s-staging-cri-tools/"
	for _, tc := range []struct {
		ref                   string
		user                  string
		entrypoint, cmd       []string
		stopSignal, port, dir string
		files                 []string
	}{
		{ref: e2e + "busybox:1.29-2", cmd: []string{"sh"}, files: []string{"bin/sh", "bin/ls", "bin/brctl", "bin/pgrep", "bin/ipcs", "etc/passwd"}},
		{ref: e2e + "nginx:1.14-2", entrypoint: []string{"/docker-entrypoint.sh"}, cmd: []string{"nginx", "-g", "daemon off;"},
			stopSignal: "SIGTERM", port: "80/tcp", files: []string{"usr/sbin/nginx", "usr/share/nginx/html/index.html", "var/run"}},
		{ref: staging + "hostnet-nginx-amd64:latest", entrypoint: []string{"/docker-entrypoint.sh"},
			cmd: []string{"nginx", "-g", "daemon off;"}, stopSignal: "SIGQUIT", port: "80/tcp"},
		{ref: e2e + "httpd:2.4.39-4", cmd: []string{"httpd-foreground"}, stopSignal: "SIGWINCH", port: "80/tcp",
			dir: "/usr/local/apache2", files: []string{"usr/local/apache2/bin/httpd", "usr/local/apache2/htdocs/index.html"}},
		{ref: e2e + "nonewprivs:1.3", user: "1000", cmd: []string{"/usr/local/bin/nnp"},
			files: []string{"usr/local/bin/nnp", "usr/local/libexec/nnp/id"}},
		{ref: "registry.k8s.io/pause:3.9", user: "65535:65535", entrypoint: []string{"/pause"}, files: []string{"pause"}},
		{ref: staging + "test-image-user-uid:latest", user: "1002", cmd: []string{"sh"}},
		{ref: staging + "test-image-user-username:latest", user: "www-data", cmd: []string{"sh"}},
		{ref: staging + "test-image-user-uid-group:latest", user: "1003:1004", cmd: []string{"sh"}},
		{ref: staging + "test-image-user-username-group:latest", user: "www-data:1004", cmd: []string{"sh"}},
		{ref: staging + "test-image-predefined-group:latest", user: "1000", cmd: []string{"sh"}, files: []string{"home/default-user"}},
		{ref: staging + "test-image-tag:test", cmd: []string{"sh"}, files: []string{"test"}},
		{ref: staging + "test-image-tag:all", cmd: []string{"sh"}, files: []string{"all"}},
		{ref: staging + "test-image-latest:latest", cmd: []string{"sh"}, files: []string{"test-image-latest"}},
		{ref: staging + "test-image-tags:2", cmd: []string{"sh"}, files: []string{"same-image"}},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			img := amd64(t, imgs[tc.ref])
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			if c.User != tc.user || !slices.Equal(c.Entrypoint, tc.entrypoint) || !slices.Equal(c.Cmd, tc.cmd) ||
				c.StopSignal != tc.stopSignal || c.WorkingDir != tc.dir {
				t.Errorf("config = %+v", c)
			}
			if _, ok := c.ExposedPorts[tc.port]; tc.port != "" && !ok {
				t.Errorf("port %s not exposed: %v", tc.port, c.ExposedPorts)
			}
			if cf.OS != "linux" || cf.Architecture != "amd64" {
				t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
			}
			files := listing(t, img)
			for _, f := range tc.files {
				if files[f] == nil {
					t.Errorf("%s missing", f)
				}
			}
		})
	}
}

// readFile is the content of name in the image's flattened filesystem.
func readFile(t *testing.T, img v1.Image, name string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	content := ""
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err != nil {
				break
			}
			if hdr.Name == name {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				content = string(b)
			}
		}
		rc.Close()
	}
	return content
}

func TestCritestImageFiles(t *testing.T) {
	imgs := critestImages(t)
	const e2e, staging = "registry.k8s.io/e2e-test-images/", "gcr.io/k8s-staging-cri-tools/"

	busybox := amd64(t, imgs[e2e+"busybox:1.29-2"])
	passwd := readFile(t, busybox, "etc/passwd")
	for _, u := range []string{"root:x:0:0:", "www-data:x:33:33:", "nobody:x:65534:65534:"} {
		if !strings.Contains(passwd, "\n"+u) && !strings.HasPrefix(passwd, u) {
			t.Errorf("busybox passwd lacks %s", u)
		}
	}
	predefined := amd64(t, imgs[staging+"test-image-predefined-group:latest"])
	if !strings.Contains(readFile(t, predefined, "etc/passwd"), "default-user:x:1000:1000:") ||
		!strings.Contains(readFile(t, predefined, "etc/group"), "group-defined-in-image:x:50000:default-user\n") {
		t.Error("predefined-group image lacks default-user in group-defined-in-image")
	}
	if h := listing(t, predefined)["home/default-user"]; h == nil || h.Uid != 1000 || h.Gid != 1000 {
		t.Errorf("home/default-user = %+v", h)
	}
	nnp := listing(t, amd64(t, imgs[e2e+"nonewprivs:1.3"]))
	if h := nnp["usr/local/libexec/nnp/id"]; h == nil || h.Mode&0o4000 == 0 || h.Uid != 0 {
		t.Errorf("nnp id = %+v, want set-user-ID root", h)
	}
	for ref, port := range map[string]int{e2e + "nginx:1.14-2": 80, staging + "hostnet-nginx-amd64:latest": 12003} {
		conf := readFile(t, amd64(t, imgs[ref]), "etc/nginx/conf.d/default.conf")
		if !strings.Contains(conf, "listen       "+strconv.Itoa(port)+";") {
			t.Errorf("%s listens on %q", ref, conf)
		}
	}
}

func TestCritestScriptsParse(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skip(ErrNoBusybox)
	}
	for name, script := range map[string]string{
		"pgrep": pgrepScript, "ipcs": ipcsScript, "nginx entrypoint": nginxEntrypoint, "nginx master": nginxMaster,
		"httpd-foreground": httpdForeground, "pause": pauseScript, "nnp": nnpScript,
	} {
		out, err := exec.Command(BusyboxPath, "sh", "-n", "-c", script).CombinedOutput()
		if err != nil {
			t.Errorf("%s does not parse: %v: %s", name, err, out)
		}
	}
}

func TestCritestPgrepAndIpcs(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skip(ErrNoBusybox)
	}
	sleep := exec.Command(BusyboxPath, "sleep", "60")
	// argv[0] "sleep" would be enough for busybox, but comm follows the file name: start it through a
	// link named sleep.
	dir := t.TempDir()
	if err := os.Symlink(BusyboxPath, dir+"/sleep"); err != nil {
		t.Fatal(err)
	}
	sleep.Path = dir + "/sleep"
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	}()
	out, err := exec.Command(BusyboxPath, "sh", "-c", pgrepScript, "pgrep", "^sleep$").Output()
	if err != nil {
		t.Fatalf("pgrep: %v", err)
	}
	if !slices.Contains(strings.Fields(string(out)), strconv.Itoa(sleep.Process.Pid)) {
		t.Errorf("pgrep ^sleep$ printed %q, want pid %d among them", out, sleep.Process.Pid)
	}
	if err := exec.Command(BusyboxPath, "sh", "-c", pgrepScript, "pgrep", "^no-such-process-name$").Run(); err == nil {
		t.Error("pgrep of an unused name succeeded")
	}
	out, err = exec.Command(BusyboxPath, "sh", "-c", ipcsScript, "ipcs", "-m").Output()
	if err != nil {
		t.Fatalf("ipcs -m: %v", err)
	}
	if !strings.Contains(string(out), "------ Shared Memory Segments --------") || strings.Contains(string(out), "Semaphore") {
		t.Errorf("ipcs -m printed %q", out)
	}
}

func TestSharedObjects(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err == nil {
		libs, err := sharedObjects(BusyboxPath)
		if err != nil {
			t.Fatal(err)
		}
		if interp, _, _ := elfDeps(BusyboxPath); interp == "" && len(libs) != 0 {
			t.Errorf("static %s needs %v", BusyboxPath, libs)
		}
	}
	sh, err := exec.LookPath("ls")
	if err != nil {
		t.Skip("no ls to read")
	}
	interp, _, err := elfDeps(sh)
	if err != nil || interp == "" {
		t.Skipf("%s is not a dynamic ELF binary (%v)", sh, err)
	}
	libs, err := sharedObjects(sh)
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) < 2 || libs[0] != interp && !slices.Contains(libs, interp) {
		t.Errorf("shared objects of %s: %v, want the loader %s and libc", sh, libs, interp)
	}
	if !slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(l, "/libc.so") }) {
		t.Errorf("shared objects of %s: %v lack libc", sh, libs)
	}
}

func TestStandaloneShellProbe(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skip(ErrNoBusybox)
	}
	if _, err := StandaloneShell(BusyboxPath); err != nil {
		t.Fatal(err)
	}
	if _, err := StandaloneShell("/nonexistent/busybox"); err == nil {
		t.Error("probing a missing binary succeeded")
	}
}
