package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/runtime/oci"
)

// fakeImages serves images by ref or id and counts the holds on each.
type fakeImages struct {
	images map[string]image.Image
	holds  map[string]int
}

func (f *fakeImages) Get(ref string) (image.Image, error) {
	for r, img := range f.images {
		if r == ref || img.ID == ref {
			return img, nil
		}
	}
	return image.Image{}, image.ErrNotFound
}

func (f *fakeImages) Retain(id string) (func(), error) {
	f.holds[id]++
	return func() { f.holds[id]-- }, nil
}

// fakeMounter records mounts; a mount "happens" by creating a marker file in the target, so sub paths can
// be looked up in the view.
type fakeMounter struct {
	mounts  map[string][]string
	calls   []string
	failing bool
}

func (f *fakeMounter) mount(layers []string, target string) error {
	if f.failing {
		return errors.New("mount failed")
	}
	f.calls = append(f.calls, "mount "+target)
	f.mounts[target] = layers
	return os.MkdirAll(filepath.Join(target, "etc"), 0o755)
}

func (f *fakeMounter) unmount(target string) error {
	f.calls = append(f.calls, "unmount "+target)
	delete(f.mounts, target)
	return os.RemoveAll(filepath.Join(target, "etc"))
}

func (f *fakeMounter) mounted(target string) (bool, error) {
	_, ok := f.mounts[target]
	return ok, nil
}

func newTestVolumes(t *testing.T) (*imageVolumes, *fakeImages, *fakeMounter) {
	t.Helper()
	imgs := &fakeImages{
		images: map[string]image.Image{
			"example.com/data:1":  {ID: "sha256:aaaa", Layers: []string{"/layers/1", "/layers/2"}},
			"example.com/other:1": {ID: "sha256:bbbb", Layers: []string{"/layers/3"}},
		},
		holds: map[string]int{},
	}
	mnt := &fakeMounter{mounts: map[string][]string{}}
	return newImageVolumes(t.TempDir(), imgs, mnt), imgs, mnt
}

func TestImageVolumesShareOneViewPerPodAndImage(t *testing.T) {
	v, imgs, mnt := newTestVolumes(t)
	mounts := []oci.Mount{
		{ContainerPath: "/host", HostPath: "/srv"},
		{ContainerPath: "/data", HostPath: "example.com/data:1", Image: true},
		{ContainerPath: "/etc-of-data", HostPath: "example.com/data:1", Image: true, ImageSubPath: "etc"},
	}
	spec1, rec1, release1, err := v.resolve("pod1", mounts)
	if err != nil {
		t.Fatal(err)
	}
	view := v.path("pod1", "sha256:aaaa")
	if spec1[0].HostPath != "/srv" || spec1[1].HostPath != view || spec1[2].HostPath != filepath.Join(view, "etc") {
		t.Errorf("spec mounts = %+v", spec1)
	}
	if rec1[1].HostPath != "example.com/data:1" || rec1[1].ImageID != "sha256:aaaa" || rec1[0].ImageID != "" {
		t.Errorf("recorded mounts = %+v", rec1)
	}
	if mounts[1].HostPath != "example.com/data:1" || mounts[1].ImageID != "" {
		t.Errorf("resolve changed its input: %+v", mounts)
	}
	if got := mnt.mounts[view]; !slices.Equal(got, []string{"/layers/1", "/layers/2"}) {
		t.Errorf("view layers = %v", got)
	}
	// A second container of the pod shares the view, so its spec is the same; another pod gets its own.
	spec2, _, release2, err := v.resolve("pod1", mounts)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(spec1, spec2) {
		t.Errorf("second container's mounts %+v differ from the first's %+v", spec2, spec1)
	}
	_, _, release3, err := v.resolve("pod2", mounts[1:2])
	if err != nil {
		t.Fatal(err)
	}
	if len(mnt.mounts) != 2 || imgs.holds["sha256:aaaa"] != 2 {
		t.Errorf("mounts %v, holds %v; want one view per pod, each holding the image", mnt.mounts, imgs.holds)
	}
	release1()
	if _, ok := mnt.mounts[view]; !ok {
		t.Error("view unmounted while a container still uses it")
	}
	release2()
	release3()
	if len(mnt.mounts) != 0 || imgs.holds["sha256:aaaa"] != 0 {
		t.Errorf("after the last release: mounts %v, holds %v", mnt.mounts, imgs.holds)
	}
	if _, err := os.Stat(filepath.Dir(view)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod's image volume dir left behind: %v", err)
	}
}

func TestImageVolumesRefuse(t *testing.T) {
	tests := []struct {
		name    string
		mount   oci.Mount
		failing bool
		want    error
		wantMsg string
	}{
		{"image not pulled", oci.Mount{ContainerPath: "/d", HostPath: "example.com/missing:1", Image: true}, false, errdefs.ErrNotFound, `image "example.com/missing:1" of the volume at /d: image not found`},
		{"sub path not in the image", oci.Mount{ContainerPath: "/d", HostPath: "example.com/data:1", Image: true, ImageSubPath: "nope"}, false, errdefs.ErrInvalidArgument, "does not exist"},
		{"mount fails", oci.Mount{ContainerPath: "/d", HostPath: "example.com/data:1", Image: true}, true, nil, "mount failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, imgs, mnt := newTestVolumes(t)
			mnt.failing = tt.failing
			// A volume resolved before the failing one must be let go of too.
			ok := oci.Mount{ContainerPath: "/o", HostPath: "example.com/other:1", Image: true}
			_, _, _, err := v.resolve("pod", []oci.Mount{ok, tt.mount})
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("resolve: %v, want %v (%q)", err, tt.want, tt.wantMsg)
			}
			if len(mnt.mounts) != 0 || imgs.holds["sha256:aaaa"] != 0 || imgs.holds["sha256:bbbb"] != 0 {
				t.Errorf("a failed resolve left mounts %v, holds %v", mnt.mounts, imgs.holds)
			}
		})
	}
}

func TestImageVolumesAdoptAndPrune(t *testing.T) {
	v, imgs, mnt := newTestVolumes(t)
	recorded := []oci.Mount{{ContainerPath: "/data", HostPath: "example.com/data:1", Image: true, ImageID: "sha256:aaaa"}}
	// A previous daemon left two views mounted: one a recorded container uses, one nothing uses.
	kept, stale := v.path("pod1", "sha256:aaaa"), v.path("pod9", "sha256:bbbb")
	for _, p := range []string{kept, stale} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		mnt.mounts[p] = nil
	}
	release, err := v.adopt("pod1", recorded)
	if err != nil {
		t.Fatal(err)
	}
	v.prune()
	if slices.Contains(mnt.calls, "mount "+kept) {
		t.Error("adopt mounted a view that was still mounted")
	}
	if _, ok := mnt.mounts[kept]; !ok || imgs.holds["sha256:aaaa"] != 1 {
		t.Errorf("adopted view: mounts %v, holds %v", mnt.mounts, imgs.holds)
	}
	if _, ok := mnt.mounts[stale]; ok {
		t.Error("prune kept a view no container holds")
	}
	release()
	if len(mnt.mounts) != 0 || imgs.holds["sha256:aaaa"] != 0 {
		t.Errorf("after release: mounts %v, holds %v", mnt.mounts, imgs.holds)
	}
}
