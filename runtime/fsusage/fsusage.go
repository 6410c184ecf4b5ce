// Package fsusage measures the disk usage of a directory tree as du does (allocated bytes, inodes, each
// hard-linked inode once), within bounds: a container may create millions of files in its writable layer,
// and measuring them must not cost the daemon unbounded time or memory.
package fsusage

import (
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Usage is what a walk counted.
type Usage struct {
	Bytes, Inodes uint64
	// Complete is false when the walk stopped at a limit: Bytes and Inodes are then what it had counted,
	// a lower bound.
	Complete bool
}

// Limits bound one walk; a zero field is no bound.
type Limits struct {
	// Entries is how many entries the walk visits at most.
	Entries uint64
	// Duration is how long the walk may take.
	Duration time.Duration
}

// checkEvery is how many entries go between two looks at the clock.
const checkEvery = 1024

// Measure walks root without following symlinks. Entries that vanish during the walk are skipped (the
// tree is in use); a root that does not exist is an error wrapping fs.ErrNotExist. Only inodes with more
// than one link are remembered, to count them once: memory grows with hard links, not with files.
func Measure(root string, lim Limits) (Usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	u := Usage{Complete: true}
	var entries uint64
	var deadline time.Time
	if lim.Duration > 0 {
		deadline = time.Now().Add(lim.Duration)
	}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != root {
				return nil
			}
			return err
		}
		entries++
		if lim.Entries > 0 && entries > lim.Entries ||
			!deadline.IsZero() && entries%checkEvery == 0 && time.Now().After(deadline) {
			u.Complete = false
			return fs.SkipAll
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) && p != root {
				return nil
			}
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.Inodes++
		u.Bytes += uint64(st.Blocks) * 512
		return nil
	})
	return u, err
}
