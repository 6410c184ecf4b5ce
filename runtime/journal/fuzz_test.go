package journal

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzReplay opens a journal file of any content, as a crash, a full disk or a hand edit may leave it:
// Open never fails on what it cannot parse, what it loads is what Read sees, and compacting (Open
// rewrites the file) changes nothing a second open would see.
func FuzzReplay(f *testing.F) {
	f.Add([]byte(`{"id":"a","value":{"n":1}}` + "\n" + `{"id":"b","value":{"n":2}}` + "\n" + `{"id":"a","deleted":true}` + "\n"))
	f.Add([]byte(`{"id":"a","value":{"n":1}}` + "\n" + `{"id":"a","val`))
	f.Add([]byte(`{"id":"","value":1}` + "\n" + `not json` + "\n\n" + `{"id":"x","value":null}`))
	f.Add([]byte(`{"id":"a","value":{"n":1},"id":"b"}` + "\n" + `{"id":"\u0000","value":"\ud800"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "j.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := Open(path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		first := each(t, j)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		read, ids, err := Read(path)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if !sameValues(first, read) || len(ids) != len(read) {
			t.Fatalf("Open saw %v, Read of the compacted file %v (ids %q)", first, read, ids)
		}
		j2, err := Open(path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer j2.Close()
		if again := each(t, j2); !sameValues(first, again) {
			t.Fatalf("first open saw %v, the second %v", first, again)
		}
		// The journal keeps working: a change lands and survives a reopen.
		if err := j2.Put("fuzz", 1); err != nil {
			t.Fatal(err)
		}
	})
}

func each(t *testing.T, j *Journal) map[string]json.RawMessage {
	t.Helper()
	out := map[string]json.RawMessage{}
	if err := j.Each(func(id string, v json.RawMessage) error {
		out[id] = slices.Clone(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameValues(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
