package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/fsusage"
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

// diskUsage measures root like du. Entries that vanish during the walk (a concurrent garbage collection)
// are skipped, a root that vanished is empty. The walk needs no bound of its own: the unpack limits bound
// every layer's entries, and a layer is measured once.
func diskUsage(root string) (usage, error) {
	u, err := fsusage.Measure(root, fsusage.Limits{})
	if errors.Is(err, fs.ErrNotExist) {
		return usage{}, nil
	}
	return usage{bytes: u.Bytes, inodes: u.Inodes}, err
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
