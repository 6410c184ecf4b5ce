package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Remove deletes the image ref names, with all its tags and digests. Its layers and blobs are deleted when
// no other image uses them and no Retain holds the image; a retained image stays on disk, hidden, until the
// last release. An unknown ref returns an error wrapping ErrNotFound (CRI's RemoveImage turns that into
// success, as api.proto asks).
func (s *Store) Remove(ctx context.Context, ref string) error {
	s.mu.Lock()
	r, err := s.resolveLocked(ref, false)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remove image: %w", err)
	}
	snap := s.snapshotLocked()
	s.unindex(r)
	r.RepoTags, r.RepoDigests = nil, nil
	if s.retains[r.ID] > 0 {
		r.Removed = true
	} else {
		delete(s.images, r.ID)
	}
	if err := s.persistLocked(); err != nil {
		if !r.Removed && diskFull(err) {
			err = s.freeOnFullDiskLocked(log.G(ctx))
			s.mu.Unlock()
			if err != nil {
				return fmt.Errorf("remove image %s: %w", r.ID, err)
			}
			return nil
		}
		s.restoreLocked(snap)
		s.mu.Unlock()
		return fmt.Errorf("remove image %s: %w", r.ID, err)
	}
	trash, err := s.collectLocked()
	s.mu.Unlock()
	s.removeAll(log.G(ctx), trash)
	if err != nil {
		log.G(ctx).WithError(err).WithField("image", r.ID).Warn("image store: garbage collection after remove")
	}
	return nil
}

// diskFull tells whether err says the store's filesystem (or the user's
// quota on it) is full.
func diskFull(err error) bool { return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) }

// freeOnFullDiskLocked finishes the removal of records already dropped from
// memory when the records cannot be rewritten for want of space, which is
// when the kubelet removes images: to free some. The content no record
// names any more is deleted first, in place (moving it aside may need
// space too), then the records are written. Should that still fail, or the
// daemon die in between, a record left on disk names layers that are gone,
// and New drops it.
// Preconditions: s.mu held.
func (s *Store) freeOnFullDiskLocked(l *log.Entry) error {
	trash, err := s.sweepLocked(true)
	s.removeAll(l, trash)
	if err != nil {
		return fmt.Errorf("free space on a full disk: %w", err)
	}
	if err := s.persistLocked(); err != nil {
		l.WithError(err).Warn("image store: deleted the content of removed images, but not yet their records")
	}
	return nil
}

// Retain records that a container uses the image id names (any ref Get accepts; a removed but still
// retained image is found by its full id, which a daemon recovering its containers needs). While any
// reference is held the image's layers are not deleted. release is idempotent.
func (s *Store) Retain(id string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveLocked(id, true)
	if err != nil {
		return nil, fmt.Errorf("retain image: %w", err)
	}
	s.retains[r.ID]++
	var once sync.Once
	imageID := r.ID
	return func() { once.Do(func() { s.release(imageID) }) }, nil
}

func (s *Store) release(id string) {
	s.mu.Lock()
	if s.retains[id]--; s.retains[id] > 0 {
		s.mu.Unlock()
		return
	}
	delete(s.retains, id)
	var (
		trash []string
		err   error
	)
	if r := s.images[id]; r != nil && r.collectable() {
		trash, err = s.collectLocked()
	}
	s.mu.Unlock()
	s.removeAll(s.log, trash)
	if err != nil {
		s.log.WithError(err).WithField("image", id).Warn("image store: garbage collection after release")
	}
}

// GC deletes removed or dangling images nobody retains, and layers and blobs no image refers to. Remove
// and release collect on their own; a daemon calls GC once after recovery has retained the images of
// every container that survived its restart, to finish removals that restart interrupted.
func (s *Store) GC() error {
	s.mu.Lock()
	trash, err := s.collectLocked()
	s.mu.Unlock()
	s.removeAll(s.log, trash)
	if err != nil {
		return fmt.Errorf("image store gc: %w", err)
	}
	return nil
}

// collectLocked drops collectable records nobody retains, persists, then sweeps. Records go to disk first:
// a crash in between leaves unreferenced content that New cleans, never a record pointing at missing
// layers; but on a full disk, where the records cannot be written first, see freeOnFullDiskLocked.
// Preconditions: s.mu held.
func (s *Store) collectLocked() ([]string, error) {
	var dropped []*record
	for id, r := range s.images {
		if r.collectable() && s.retains[id] == 0 {
			dropped = append(dropped, r)
		}
	}
	if len(dropped) > 0 {
		snap := s.snapshotLocked()
		for _, r := range dropped {
			s.unindex(r)
			delete(s.images, r.ID)
		}
		if err := s.persistLocked(); err != nil {
			if diskFull(err) {
				return nil, s.freeOnFullDiskLocked(s.log)
			}
			s.restoreLocked(snap)
			return nil, err
		}
	}
	return s.sweepLocked(false)
}

// sweepLocked moves layer dirs and blobs that no record names and no ingest holds into tmp/ (a rename
// each, so the lock is held briefly) and returns them for removeAll; inPlace deletes them where they are
// instead, which needs no new directory.
// Preconditions: s.mu held.
func (s *Store) sweepLocked(inPlace bool) ([]string, error) {
	used := make(map[string]bool, len(s.inflight))
	for k := range s.inflight {
		used[k] = true
	}
	for _, r := range s.images {
		for _, d := range r.DiffIDs {
			used[d] = true
		}
		for _, b := range r.Blobs {
			used[b] = true
		}
	}
	var trash []string
	move := func(path string) error {
		if inPlace {
			return os.RemoveAll(path)
		}
		tmp, err := os.MkdirTemp(s.tmpDir(), "trash-")
		if err != nil {
			return err
		}
		trash = append(trash, tmp)
		return os.Rename(path, tmp+"/x")
	}
	for d := range s.layers {
		if used[d] {
			continue
		}
		if err := move(s.layerPath(d)); err != nil && !os.IsNotExist(err) {
			return trash, fmt.Errorf("delete layer %s: %w", d, err)
		}
		delete(s.layers, d)
		delete(s.usage, d)
	}
	blobs, err := os.ReadDir(s.blobPath(""))
	if err != nil {
		return trash, fmt.Errorf("list blobs: %w", err)
	}
	for _, b := range blobs {
		d := "sha256:" + b.Name()
		if used[d] || strings.HasPrefix(b.Name(), ".") {
			continue
		}
		if err := move(s.blobPath(d)); err != nil && !os.IsNotExist(err) {
			return trash, fmt.Errorf("delete blob %s: %w", d, err)
		}
	}
	return trash, nil
}

// removeAll deletes what collectLocked moved aside; outside the lock because a big layer takes a while.
func (s *Store) removeAll(l *log.Entry, paths []string) {
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			// New empties tmp/ anyway; nothing is lost but disk space until then.
			l.WithError(err).WithField("path", p).Warn("image store: delete unused content")
		}
	}
}
