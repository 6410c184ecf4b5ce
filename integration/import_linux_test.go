package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
	"github.com/warmpod/warmpod/integration/launch"
	"github.com/warmpod/warmpod/integration/testimages"
)

var ctl struct {
	once sync.Once
	bin  string
	err  error
}

// warmpodctl builds warmpodctl into the run's bin dir, once for all the
// tests that use it.
func warmpodctl(t testing.TB) string {
	t.Helper()
	ctl.once.Do(func() { ctl.bin, ctl.err = launch.GoBuild(binDir, "github.com/warmpod/warmpod/cmd/warmpodctl") })
	if ctl.err != nil {
		t.Fatal(ctl.err)
	}
	return ctl.bin
}

// TestImageImport loads a docker-archive and an OCI layout tarball with
// warmpodctl image import, for nodes without a registry, and runs a
// container from an imported image.
func TestImageImport(t *testing.T) {
	begin(t)
	ctl := warmpodctl(t)
	dir := t.TempDir()
	dockerImg, err := testimages.Busybox(testimages.WithCmd("echo", "from the docker archive"))
	if err != nil {
		t.Fatal(err)
	}
	ociImg, err := testimages.Busybox(testimages.WithCmd("echo", "from the oci layout"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, fn func(f *os.File) error) string {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := fn(f); err != nil {
			t.Fatal(err)
		}
		return path
	}
	dockerTar := write("docker.tar", func(f *os.File) error {
		return testimages.WriteDockerArchive(f, map[string]v1.Image{"example.com/imported/docker:v1": dockerImg})
	})
	ociTar := write("oci.tar", func(f *os.File) error {
		return testimages.WriteOCILayout(f, map[string]any{"example.com/imported/oci:v1": ociImg})
	})

	for _, tc := range []struct{ file, ref, output string }{
		{dockerTar, "example.com/imported/docker:v1", "from the docker archive"},
		{ociTar, "example.com/imported/oci:v1", "from the oci layout"},
	} {
		out, err := exec.Command(ctl, "--socket", d.SocketPath(), "image", "import", tc.file).CombinedOutput()
		if err != nil {
			t.Fatalf("image import %s: %v\n%s", tc.file, err, out)
		}
		if !strings.Contains(string(out), tc.ref) {
			t.Errorf("image import printed %q, want it to name %s", out, tc.ref)
		}
		st, err := d.Image.ImageStatus(testCtx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: tc.ref}})
		if err != nil || st.Image == nil {
			t.Fatalf("ImageStatus %s after import: %v, %v", tc.ref, st, err)
		}

		cfg := newPodConfig("import")
		id := runPod(t, cfg)
		c := newContainerConfig("main")
		c.Image.Image = tc.ref
		cid := runContainer(t, id, cfg, c)
		if st := waitExited(t, cid); st.ExitCode != 0 || st.ImageRef == "" {
			t.Errorf("container of %s: exit %d, image ref %q", tc.ref, st.ExitCode, st.ImageRef)
		}
		lines := logContents(readCRILog(t, filepath.Join(cfg.LogDirectory, "main.log")), "stdout")
		if len(lines) != 1 || lines[0] != tc.output {
			t.Errorf("container of %s printed %q, want %q", tc.ref, lines, tc.output)
		}
		removePod(t, id, cfg)
		if _, err := d.Image.RemoveImage(testCtx(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: tc.ref}}); err != nil {
			t.Errorf("RemoveImage %s: %v", tc.ref, err)
		}
	}

	// Bad input: a path that does not exist, a relative path, a file that
	// is no image archive.
	bogus := write("bogus.tar", func(f *os.File) error { _, err := f.WriteString("not a tarball"); return err })
	before, _ := d.Image.ListImages(testCtx(t), &runtimeapi.ListImagesRequest{})
	for _, tc := range []struct {
		path string
		code codes.Code
	}{
		{filepath.Join(dir, "missing.tar"), codes.InvalidArgument},
		{"relative.tar", codes.InvalidArgument},
	} {
		_, err := wp().ImportImage(testCtx(t), &warmpodv1.ImportImageRequest{Path: tc.path})
		wantCode(t, err, tc.code, tc.path)
	}
	if _, err := wp().ImportImage(testCtx(t), &warmpodv1.ImportImageRequest{Path: bogus}); err == nil {
		t.Error("importing a file that is no image archive succeeded")
	}
	after, _ := d.Image.ListImages(testCtx(t), &runtimeapi.ListImagesRequest{})
	if len(after.GetImages()) != len(before.GetImages()) {
		t.Errorf("failed imports changed the image list: %d images before, %d after", len(before.GetImages()), len(after.GetImages()))
	}
}
