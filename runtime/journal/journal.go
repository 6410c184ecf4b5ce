// Package journal keeps a set of JSON objects, keyed by id, in one
// append-only file: each change is one line, the last line of an id wins,
// and a removal is a line of its own. An update is one write(2) to an open
// file, where replacing a file per object costs a create and a rename (up to
// a millisecond each on a disk-backed filesystem, on paths that run for every
// container of every pod reset). The file is rewritten compactly as it grows.
//
// Nothing is synced: the objects describe processes and mounts that do not
// survive a reboot either. A line torn by a crash is skipped when reading.
package journal

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// compactAfter is the number of lines past which the file is rewritten when
// most of its lines are stale.
const compactAfter = 1024

// Journal is one journal file. It is safe for concurrent use.
type Journal struct {
	path string

	mu    sync.Mutex
	f     *os.File
	lines int
	// live holds the latest line of every id, in the order ids appeared.
	live  map[string][]byte
	order []string
}

type line struct {
	ID      string          `json:"id"`
	Deleted bool            `json:"deleted,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
}

// Open opens (creating) the journal at path and loads what it holds.
func Open(path string) (*Journal, error) {
	j := &Journal{path: path, live: map[string][]byte{}}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	if err := j.load(); err != nil {
		return nil, err
	}
	if err := j.compactLocked(); err != nil {
		return nil, err
	}
	return j, nil
}

func (j *Journal) load() error {
	return scan(j.path, func(l *line, raw []byte) {
		if l.Deleted {
			delete(j.live, l.ID)
			return
		}
		if _, ok := j.live[l.ID]; !ok {
			j.order = append(j.order, l.ID)
		}
		j.live[l.ID] = append([]byte(nil), raw...)
	})
}

// scan calls fn for every well-formed line of the file at path.
func scan(path string, fn func(l *line, raw []byte)) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var l line
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.ID == "" {
			continue
		}
		fn(&l, sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read journal %s: %w", path, err)
	}
	return nil
}

// Put records v as the value of id.
func (j *Journal) Put(id string, v any) error {
	val, err := json.Marshal(v)
	if err != nil {
		return err
	}
	data, err := valueLine(id, val)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	// Written first: a value that did not reach the file is not kept, or a
	// later compaction would write what its caller was told failed.
	if err := j.appendLocked(data); err != nil {
		return err
	}
	if _, ok := j.live[id]; !ok {
		j.order = append(j.order, id)
	}
	j.live[id] = data
	return j.compactIfStaleLocked()
}

// valueLine is json.Marshal(&line{ID: id, Value: val}) for val from
// json.Marshal, which is compact and escapes as the line's encoding would:
// it is built around val instead of copying it through the encoder's
// scanner a second time.
func valueLine(id string, val []byte) ([]byte, error) {
	const head, mid, tail = `{"id":`, `,"value":`, `}`
	// Two bytes for the id's quotes, one for the newline appendLocked adds.
	data := make([]byte, 0, len(head)+len(id)+2+len(mid)+len(val)+len(tail)+1)
	data = append(data, head...)
	data, err := appendJSONString(data, id)
	if err != nil {
		return nil, err
	}
	data = append(data, mid...)
	data = append(data, val...)
	return append(data, tail...), nil
}

// appendJSONString appends s as json.Marshal encodes it. An ASCII string
// with nothing json.Marshal escapes, as ids are, is only quoted; any other
// goes through json.Marshal.
func appendJSONString(dst []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			return append(dst, b...), nil
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"'), nil
}

// Delete records the removal of id. Deleting an unknown id is a no-op.
func (j *Journal) Delete(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.live[id]; !ok {
		return nil
	}
	data, err := json.Marshal(&line{ID: id, Deleted: true})
	if err != nil {
		return err
	}
	if err := j.appendLocked(data); err != nil {
		return err
	}
	delete(j.live, id)
	return j.compactIfStaleLocked()
}

// Each calls fn with the id and value of every live object, oldest id first.
func (j *Journal) Each(fn func(id string, value json.RawMessage) error) error {
	j.mu.Lock()
	var vals []*line
	for _, id := range j.order {
		if raw, ok := j.live[id]; ok {
			var l line
			if json.Unmarshal(raw, &l) == nil {
				vals = append(vals, &l)
			}
		}
	}
	j.mu.Unlock()
	var errs []error
	for _, l := range vals {
		if err := fn(l.ID, l.Value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.ID, err))
		}
	}
	return errors.Join(errs...)
}

// Read returns the live values of the journal at path without opening it
// for writing (for a reader while another process owns the journal).
func Read(path string) (map[string]json.RawMessage, []string, error) {
	live := map[string]json.RawMessage{}
	var order []string
	err := scan(path, func(l *line, _ []byte) {
		if l.Deleted {
			delete(live, l.ID)
			return
		}
		if _, ok := live[l.ID]; !ok {
			order = append(order, l.ID)
		}
		live[l.ID] = append(json.RawMessage(nil), l.Value...)
	})
	var ids []string
	for _, id := range order {
		if _, ok := live[id]; ok {
			ids = append(ids, id)
		}
	}
	return live, ids, err
}

func (j *Journal) appendLocked(data []byte) error {
	if j.f == nil {
		return os.ErrClosed
	}
	if _, err := j.f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("append to %s: %w", j.path, err)
	}
	j.lines++
	return nil
}

// compactIfStaleLocked compacts the file once most of its lines are stale.
func (j *Journal) compactIfStaleLocked() error {
	if j.lines > compactAfter && j.lines > 4*len(j.live) {
		return j.compactLocked()
	}
	return nil
}

// compactLocked rewrites the file with one line per live id.
func (j *Journal) compactLocked() error {
	var buf []byte
	order := j.order[:0]
	for _, id := range j.order {
		data, ok := j.live[id]
		if !ok {
			continue
		}
		order = append(order, id)
		buf = append(buf, data...)
		buf = append(buf, '\n')
	}
	j.order = order
	tmp := j.path + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return fmt.Errorf("compact %s: %w", j.path, err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", j.path, err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = f
	j.lines = len(order)
	return nil
}

// Close closes the file; later changes fail with os.ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
