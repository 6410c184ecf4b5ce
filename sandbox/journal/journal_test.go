package journal

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type obj struct {
	N int `json:"n"`
}

func values(t *testing.T, j *Journal) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := j.Each(func(id string, v json.RawMessage) error {
		var o obj
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		out[id] = o.N
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPutDeleteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := j.Put("a", obj{i}); err != nil {
			t.Fatal(err)
		}
	}
	j.Put("b", obj{7})
	j.Put("c", obj{8})
	j.Delete("b")
	j.Delete("nope")
	want := map[string]int{"a": 4, "c": 8}
	if got := values(t, j); len(got) != 2 || got["a"] != 4 || got["c"] != 8 {
		t.Fatalf("live = %v, want %v", got, want)
	}
	j.Close()
	if err := j.Put("x", obj{1}); err == nil {
		t.Error("put after close succeeded")
	}
	j2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if got := values(t, j2); len(got) != 2 || got["a"] != 4 || got["c"] != 8 {
		t.Fatalf("after reopen live = %v, want %v", got, want)
	}
	// Reopening compacts: one line per live id.
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n != 2 {
		t.Errorf("compacted journal has %d lines, want 2", n)
	}
	live, ids, err := Read(path)
	if err != nil || len(live) != 2 || len(ids) != 2 || ids[0] != "a" {
		t.Errorf("Read = %v %v %v", live, ids, err)
	}
}

func TestTornLineIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	j, _ := Open(path)
	j.Put("a", obj{1})
	j.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"id":"b","value":{"n":`)
	f.Close()
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if got := values(t, j); len(got) != 1 || got["a"] != 1 {
		t.Fatalf("live = %v", got)
	}
}

func TestCompactsAsItGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	j, _ := Open(path)
	defer j.Close()
	for i := 0; i < 3*compactAfter; i++ {
		if err := j.Put("a", obj{i}); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n > compactAfter+1 {
		t.Errorf("journal has %d lines after %d puts of one id", n, 3*compactAfter)
	}
	if got := values(t, j); got["a"] != 3*compactAfter-1 {
		t.Errorf("live = %v", got)
	}
}

func BenchmarkPut(b *testing.B) {
	j, _ := Open(filepath.Join(b.TempDir(), "j.log"))
	defer j.Close()
	v := obj{1}
	for i := 0; i < b.N; i++ {
		_ = j.Put("a", v)
	}
}
