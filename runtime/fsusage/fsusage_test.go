package fsusage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), make([]byte, 8192), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Hard links count once; symlinks are not followed.
	if err := os.Link(filepath.Join(dir, "f0"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(dir, "root")); err != nil {
		t.Fatal(err)
	}
	all, err := Measure(dir, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// The dir, 20 files, the symlink.
	if !all.Complete || all.Inodes != 22 || all.Bytes < 20*8192 {
		t.Errorf("Measure = %+v, want 22 inodes, at least %d bytes, complete", all, 20*8192)
	}
	// Issue 12: a walk over a tree of millions of files is bounded.
	part, err := Measure(dir, Limits{Entries: 10})
	if err != nil {
		t.Fatal(err)
	}
	if part.Complete || part.Inodes != 10 {
		t.Errorf("Measure with 10 entries at most = %+v, want 10 inodes, incomplete", part)
	}
	if _, err := Measure(filepath.Join(dir, "missing"), Limits{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Measure of a missing dir = %v, want ErrNotExist", err)
	}
}

// The time limit is checked every checkEvery entries: a limit already past stops the walk there.
func TestMeasureDuration(t *testing.T) {
	dir := t.TempDir()
	for i := range checkEvery + 50 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, err := Measure(dir, Limits{Duration: 1})
	if err != nil {
		t.Fatal(err)
	}
	if u.Complete || u.Inodes != checkEvery-1 {
		t.Errorf("Measure past its deadline = %+v, want %d inodes, incomplete", u, checkEvery-1)
	}
}
