package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// usage is the disk footprint of a tree: allocated bytes and distinct inodes (hardlinks count once).
type usage struct {
	bytes, inodes uint64
}

// FsInfo reports the store's disk usage for CRI ImageFsInfo. Mountpoint is the store root (what the kubelet
// resolves to a device for capacity). A layer never changes once unpacked, so its usage is measured once
// and cached; blobs and metadata are few files and measured each time.
func (s *Store) FsInfo() (FsInfo, error) {
	s.mu.Lock()
	var total usage
	var todo []string
	for d := range s.layers {
		if u, ok := s.usage[d]; ok {
			total.add(u)
		} else {
			todo = append(todo, d)
		}
	}
	s.mu.Unlock()

	for _, d := range todo {
		u, err := diskUsage(s.layerPath(d))
		if err != nil {
			return FsInfo{}, fmt.Errorf("image fs info: %w", err)
		}
		s.mu.Lock()
		if s.layers[d] { // not collected meanwhile
			s.usage[d] = u
			total.add(u)
		}
		s.mu.Unlock()
	}
	for _, p := range []string{filepath.Join(s.root, "blobs"), s.metadataPath()} {
		u, err := diskUsage(p)
		if err != nil {
			return FsInfo{}, fmt.Errorf("image fs info: %w", err)
		}
		total.add(u)
	}
	return FsInfo{Mountpoint: s.root, UsedBytes: total.bytes, InodesUsed: total.inodes}, nil
}

func (u *usage) add(o usage) {
	u.bytes += o.bytes
	u.inodes += o.inodes
}

// diskUsage walks root without following symlinks. Entries that vanish during the walk (a concurrent
// garbage collection) are skipped.
func diskUsage(root string) (usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var u usage
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		key := inode{dev: st.Dev, ino: st.Ino}
		if seen[key] {
			return nil
		}
		seen[key] = true
		u.inodes++
		u.bytes += uint64(st.Blocks) * 512
		return nil
	})
	return u, err
}

// syncfs flushes the store's filesystem.
func (s *Store) syncfs() error {
	f, err := os.Open(s.root)
	if err != nil {
		return fmt.Errorf("sync image store: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync image store: %w", err)
	}
	return nil
}
