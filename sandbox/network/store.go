package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/warmpod/warmpod/runtime/atomicfile"
)

// jsonStore keeps one JSON file of T per pod in dir. noun names a record in
// error messages ("network state", "CNI record").
type jsonStore[T any] struct {
	dir  string
	noun string
}

func (s jsonStore[T]) path(id string) string { return filepath.Join(s.dir, id+".json") }

// load returns ErrNotFound when the pod has no record.
func (s jsonStore[T]) load(id string) (*T, error) {
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read %s of pod %q: %w", s.noun, id, err)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("parse %s of pod %q: %w", s.noun, id, err)
	}
	return &v, nil
}

func (s jsonStore[T]) save(id string, v *T) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path(id), b, 0o600); err != nil {
		return fmt.Errorf("save %s of pod %q: %w", s.noun, id, err)
	}
	return nil
}

func (s jsonStore[T]) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s of pod %q: %w", s.noun, id, err)
	}
	return nil
}

// list reads every pod's record. Leftover temp files from a crash are
// removed.
func (s jsonStore[T]) list() ([]*T, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", s.noun, err)
	}
	var out []*T
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			_ = os.Remove(filepath.Join(s.dir, name))
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok {
			continue
		}
		v, err := s.load(id)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
