package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"

	"github.com/warmpod/warmpod/runtime/atomicfile"
)

// metadataVersion is bumped when images.json changes incompatibly; New refuses versions it does not know
// rather than guessing.
const metadataVersion = 1

// record is the persisted form of an image. Everything in it is immutable once ingested except the names,
// Pinned and the Removed/Dangling flags, which change only under Store.mu.
type record struct {
	ID          string            `json:"id"`
	RepoTags    []string          `json:"repoTags,omitempty"`
	RepoDigests []string          `json:"repoDigests,omitempty"`
	Size        int64             `json:"size"`
	Config      Config            `json:"config"`
	DiffIDs     []string          `json:"diffIDs"`
	Blobs       []string          `json:"blobs"` // index, manifest, config and layer blobs kept for it
	Annotations map[string]string `json:"annotations,omitempty"`
	Pinned      bool              `json:"pinned,omitempty"`
	Platform    string            `json:"platform,omitempty"`
	// Removed: Remove was called while the image was retained; hidden from Get/List, deleted at the last
	// release (or by GC once nobody retains it).
	Removed bool `json:"removed,omitempty"`
	// Dangling: a retag took the image's last name while it was retained; still listed, deleted at the last
	// release unless it got a name back.
	Dangling bool `json:"dangling,omitempty"`
}

type metadataFile struct {
	Version int       `json:"version"`
	Images  []*record `json:"images"`
}

func (r *record) clone() *record {
	c := *r
	c.RepoTags = slices.Clone(r.RepoTags)
	c.RepoDigests = slices.Clone(r.RepoDigests)
	c.Config = r.Config.clone()
	c.DiffIDs = slices.Clone(r.DiffIDs)
	c.Blobs = slices.Clone(r.Blobs)
	c.Annotations = maps.Clone(r.Annotations)
	return &c
}

func (r *record) named() bool { return len(r.RepoTags) > 0 || len(r.RepoDigests) > 0 }

// collectable says whether the record should go once nothing retains it.
func (r *record) collectable() bool { return r.Removed || (r.Dangling && !r.named()) }

func loadRecords(path string) ([]*record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image metadata: %w", err)
	}
	var f metadataFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse image metadata %s: %w", path, err)
	}
	if f.Version != metadataVersion {
		return nil, fmt.Errorf("image metadata %s has version %d, this warmpod reads %d", path, f.Version, metadataVersion)
	}
	return f.Images, nil
}

// persistLocked writes every record to images.json atomically: a crash leaves either the old or the new
// file, never a torn one.
// Preconditions: s.mu held.
func (s *Store) persistLocked() error {
	f := metadataFile{Version: metadataVersion, Images: make([]*record, 0, len(s.images))}
	for _, r := range s.images {
		f.Images = append(f.Images, r)
	}
	sort.Slice(f.Images, func(i, j int) bool { return f.Images[i].ID < f.Images[j].ID })
	data, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image metadata: %w", err)
	}
	if err := atomicfile.WriteSync(s.metadataPath(), data, 0o600); err != nil {
		return fmt.Errorf("write image metadata: %w", err)
	}
	return nil
}

// snapshotLocked copies the mutable state so a failed persist can be rolled back.
// Preconditions: s.mu held.
func (s *Store) snapshotLocked() map[string]*record {
	snap := make(map[string]*record, len(s.images))
	for id, r := range s.images {
		snap[id] = r.clone()
	}
	return snap
}

// restoreLocked puts a snapshot back and rebuilds the name indexes from it.
// Preconditions: s.mu held.
func (s *Store) restoreLocked(snap map[string]*record) {
	s.images = snap
	s.tags = map[string]string{}
	s.digests = map[string]string{}
	for _, r := range snap {
		s.index(r)
	}
}

// index adds r's names to the lookup maps.
// Preconditions: s.mu held.
func (s *Store) index(r *record) {
	for _, t := range r.RepoTags {
		s.tags[t] = r.ID
	}
	for _, d := range r.RepoDigests {
		s.digests[d] = r.ID
	}
}

// unindex removes r's names from the lookup maps.
// Preconditions: s.mu held.
func (s *Store) unindex(r *record) {
	for _, t := range r.RepoTags {
		if s.tags[t] == r.ID {
			delete(s.tags, t)
		}
	}
	for _, d := range r.RepoDigests {
		if s.digests[d] == r.ID {
			delete(s.digests, d)
		}
	}
}

// moveNameLocked points name (a tag when tag is set, else a repo digest) at r, taking it from the image
// that held it. That image is returned when it was left without names: the caller decides its fate.
// Preconditions: s.mu held.
func (s *Store) moveNameLocked(r *record, name string, tag bool) *record {
	idx, list := s.digests, &r.RepoDigests
	if tag {
		idx, list = s.tags, &r.RepoTags
	}
	var orphan *record
	if prev, ok := idx[name]; ok && prev != r.ID {
		if old := s.images[prev]; old != nil {
			if tag {
				old.RepoTags = slices.DeleteFunc(old.RepoTags, func(t string) bool { return t == name })
			} else {
				old.RepoDigests = slices.DeleteFunc(old.RepoDigests, func(d string) bool { return d == name })
			}
			if !old.named() {
				orphan = old
			}
		}
	}
	idx[name] = r.ID
	if !slices.Contains(*list, name) {
		*list = append(*list, name)
		sort.Strings(*list)
	}
	return orphan
}
