// Package journal keeps a set of JSON objects, keyed by id, in one
// append-only file: each change is one line, the last line of an id wins,
// and a removal is a line of its own. An update is one write(2) to an open
// file, where replacing a file per object costs a create and a rename (up to
// a millisecond each on a disk-backed filesystem, on paths that run for every
// container of every pod reset). The file is rewritten compactly as it grows.
//
// Nothing is synced: the objects describe processes and mounts that do not
// survive a reboot either. A line torn by a crash is skipped when reading.
//
// # A full disk
//
// A change that cannot be written (ENOSPC, or any write error) fails and
// changes nothing, in memory as on disk: what a reader sees after a reopen
// is what the journal held. A write cut short leaves part of a line; the
// file is truncated back to its last whole line at once, or, when even that
// fails, before the next change, which otherwise starts on a line of its
// own; a reader skips the partial line either way (it has no newline, or it
// does not parse), so it never swallows the change after it. Opening needs
// no free space: a partial last line is cut off (which frees space), and
// the rewrite that compacts the file, which needs room for a second copy,
// is put off while it fails.
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// compactAfter is the number of lines past which the file is rewritten when
// most of its lines are stale; after a failed rewrite, the number of lines
// appended before the next try.
const compactAfter = 1024

// appendFile is the journal's open file: an *os.File opened for appending
// (tests put a faulty one in its place).
type appendFile interface {
	Write(p []byte) (int, error)
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

// Journal is one journal file. It is safe for concurrent use.
type Journal struct {
	path string

	mu sync.Mutex
	f  appendFile
	// size is the length of the file's whole lines (-1: unknown); torn is
	// set when a partial line may follow them, which could not be cut off.
	size int64
	torn bool
	// lines counts the file's lines; compactAt is the count at which the
	// next compaction is tried, when most lines are stale.
	lines     int
	compactAt int
	// live holds the latest line of every id, in the order ids appeared.
	live  map[string][]byte
	order []string
}

type line struct {
	ID      string          `json:"id"`
	Deleted bool            `json:"deleted,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
}

// Open opens (creating) the journal at path and loads what it holds. It
// compacts the file when it can, and needs no free space when it cannot.
func Open(path string) (*Journal, error) {
	j := &Journal{path: path, live: map[string][]byte{}}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	whole, err := j.load()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j.f = f
	j.size = whole.size
	if whole.partial {
		// What a failed write left; cutting it off frees space.
		j.torn = !j.cutLocked()
	}
	j.lines = whole.lines
	// Compacting rewrites the whole file beside the old one: on a full
	// disk it waits for later (compactAt).
	_ = j.compactLocked()
	return j, nil
}

// extent is what scan found in a journal file.
type extent struct {
	// size is the length of the file's whole lines, lines their number.
	size  int64
	lines int
	// partial is set when the file ends in a line without its newline: a
	// write cut short.
	partial bool
}

func (j *Journal) load() (extent, error) {
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

// scan calls fn for every well-formed line of the file at path. A last line
// without its newline is no line: its write was cut short.
func scan(path string, fn func(l *line, raw []byte)) (extent, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return extent{}, nil
	}
	if err != nil {
		return extent{}, fmt.Errorf("read journal: %w", err)
	}
	var e extent
	for {
		i := bytes.IndexByte(data[e.size:], '\n')
		if i < 0 {
			break
		}
		raw := data[e.size : e.size+int64(i)]
		e.size += int64(i) + 1
		e.lines++
		var l line
		if json.Unmarshal(raw, &l) != nil || l.ID == "" {
			continue
		}
		fn(&l, raw)
	}
	e.partial = e.size < int64(len(data))
	return e, nil
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
	j.compactIfDueLocked()
	return nil
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
	j.compactIfDueLocked()
	return nil
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
	_, err := scan(path, func(l *line, _ []byte) {
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

// appendLocked writes data as one line. A write that fails leaves no part
// of the line behind or, when the file cannot be truncated, a partial line
// that the next append steps past.
func (j *Journal) appendLocked(data []byte) error {
	if j.f == nil {
		return os.ErrClosed
	}
	buf := make([]byte, 0, len(data)+2)
	if j.torn {
		if j.cutLocked() {
			j.torn = false
		} else {
			// The partial line ends here and parses as nothing.
			buf = append(buf, '\n')
		}
	}
	buf = append(buf, data...)
	buf = append(buf, '\n')
	n, err := j.f.Write(buf)
	if err != nil {
		if n > 0 {
			j.torn = !j.cutLocked()
		}
		return fmt.Errorf("append to %s: %w", j.path, err)
	}
	switch {
	case j.torn:
		// Written past a partial line of unknown length: where the whole
		// lines end now must be asked of the file.
		j.torn = false
		j.size = -1
		if fi, err := j.f.Stat(); err == nil {
			j.size = fi.Size()
		}
	case j.size >= 0:
		j.size += int64(n)
	}
	j.lines++
	return nil
}

// cutLocked truncates the file to its whole lines, when their length is
// known, and tells whether it did.
func (j *Journal) cutLocked() bool {
	return j.size >= 0 && j.f.Truncate(j.size) == nil
}

// compactIfDueLocked compacts the file once it has grown past compactAt
// with most of its lines stale. A compaction that fails (a full disk) is
// tried again compactAfter lines later; the change that was appended stands.
func (j *Journal) compactIfDueLocked() {
	if j.lines > max(compactAfter, j.compactAt) && j.lines > 4*len(j.live) {
		_ = j.compactLocked()
	}
}

// compactLocked rewrites the file with one line per live id, beside it, and
// renames it into place. On failure the file stays as it was, and the next
// try waits for compactAfter more lines.
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
	j.compactAt = j.lines + compactAfter
	tmp := j.path + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", j.path, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", j.path, err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", j.path, err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = f
	j.size = int64(len(buf))
	j.torn = false
	j.lines = len(order)
	j.compactAt = 0
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
