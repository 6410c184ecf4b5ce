package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/warmpod/warmpod/internal/testutil"
)

// TestOverlayMounter mounts real read-only views of one and of two layers.
func TestOverlayMounter(t *testing.T) {
	testutil.RequireRoot(t, "it mounts overlays")
	dir := t.TempDir()
	layer := func(name, file string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, file), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bottom, top := layer("bottom", "a"), layer("top", "b")
	tests := []struct {
		name   string
		layers []string
		files  []string
	}{
		{"one layer", []string{bottom}, []string{"a"}},
		{"two layers", []string{bottom, top}, []string{"a", "b"}},
	}
	var m overlayMounter
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := filepath.Join(dir, "view-"+filepath.Base(t.Name()))
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := m.mount(tt.layers, target); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := m.unmount(target); err != nil {
					t.Error(err)
				}
				if ok, _ := m.mounted(target); ok {
					t.Error("still mounted after unmount")
				}
			}()
			if ok, err := m.mounted(target); err != nil || !ok {
				t.Fatalf("mounted = %v, %v", ok, err)
			}
			for _, f := range tt.files {
				if _, err := os.Stat(filepath.Join(target, f)); err != nil {
					t.Errorf("%s missing from the view: %v", f, err)
				}
			}
			err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644)
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("writing to the view: %v, want EROFS", err)
			}
		})
	}
	if err := m.unmount(filepath.Join(dir, "top")); err != nil {
		t.Errorf("unmounting what is not mounted: %v", err)
	}
}
