package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The image limits take sizes with units, from the file and from flags.
func TestImageLimitsConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	file := "[image]\nmax_layer_size = \"1GiB\"\nmax_image_size = 2147483648\nmax_layer_entries = 1000\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--config", path, "--image-max-manifest-size", "512KiB"})
	if err != nil {
		t.Fatal(err)
	}
	want := ImageConfig{MaxLayerSize: 1 << 30, MaxImageSize: 2 << 30, MaxLayerEntries: 1000, MaxManifestSize: 512 << 10}
	if cfg.Image != want {
		t.Errorf("image config = %+v, want %+v", cfg.Image, want)
	}
	for _, bad := range [][]string{
		{"--config", path, "--image-max-layer-size", "lots"},
		{"--config", path, "--image-max-layer-entries", "-1"},
	} {
		if _, err := loadConfig(bad); err == nil {
			t.Errorf("loadConfig(%q) accepted", bad)
		}
	}
}
