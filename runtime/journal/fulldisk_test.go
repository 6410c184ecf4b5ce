package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// faultyFile is the journal's file on a full disk: while full is set, each
// write puts out its first cut bytes and fails with ENOSPC; while stuck is
// set, truncation fails too.
type faultyFile struct {
	*os.File
	full  bool
	cut   int
	stuck bool
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if !f.full {
		return f.File.Write(p)
	}
	n, err := f.File.Write(p[:min(f.cut, len(p))])
	if err != nil {
		return n, err
	}
	return n, syscall.ENOSPC
}

func (f *faultyFile) Truncate(size int64) error {
	if f.stuck {
		return syscall.EIO
	}
	return f.File.Truncate(size)
}

// faulty puts a faultyFile in place of j's file.
func faulty(t *testing.T, j *Journal) *faultyFile {
	t.Helper()
	f, ok := j.f.(*os.File)
	if !ok {
		t.Fatalf("journal file is a %T", j.f)
	}
	ff := &faultyFile{File: f}
	j.f = ff
	return ff
}

// A write cut short by a full disk fails, changes nothing, and takes no
// later change with it, whether or not the partial line can be cut off.
func TestShortWriteLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stuck bool
	}{
		{"partial line cut off", false},
		{"partial line stuck", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j.log")
			j, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			for id, n := range map[string]int{"a": 1, "b": 2} {
				if err := j.Put(id, obj{n}); err != nil {
					t.Fatal(err)
				}
			}
			f := faulty(t, j)
			f.full, f.cut, f.stuck = true, 10, tc.stuck
			if err := j.Put("c", obj{3}); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("put on a full disk = %v, want ENOSPC", err)
			}
			if err := j.Delete("a"); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("delete on a full disk = %v, want ENOSPC", err)
			}
			want := map[string]int{"a": 1, "b": 2}
			if got := values(t, j); !sameInts(got, want) {
				t.Errorf("after the failed writes: %v, want %v", got, want)
			}
			// Space returns.
			f.full = false
			if err := j.Put("d", obj{4}); err != nil {
				t.Fatal(err)
			}
			if err := j.Put("a", obj{5}); err != nil {
				t.Fatal(err)
			}
			want = map[string]int{"a": 5, "b": 2, "d": 4}
			if got := values(t, j); !sameInts(got, want) {
				t.Fatalf("live = %v, want %v", got, want)
			}
			data, _ := os.ReadFile(path)
			if torn := strings.Contains(string(data), `{"id":"c"`); torn != tc.stuck {
				t.Errorf("partial line left in the file: %v, want %v:\n%s", torn, tc.stuck, data)
			}
			assertReload(t, path, want)
			// Once the partial line is past, a failure is cut off again.
			f.full, f.stuck = true, false
			if err := j.Put("e", obj{6}); err == nil {
				t.Fatal("put on a full disk succeeded")
			}
			f.full = false
			if err := j.Put("f", obj{7}); err != nil {
				t.Fatal(err)
			}
			want["f"] = 7
			assertReload(t, path, want)
		})
	}
}

// assertReload checks what a reader and a reopened journal see at path.
func assertReload(t *testing.T, path string, want map[string]int) {
	t.Helper()
	live, _, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(want) {
		t.Errorf("Read sees %d ids, want %v", len(live), want)
	}
	for id := range want {
		if _, ok := live[id]; !ok {
			t.Errorf("Read lost %q", id)
		}
	}
}

func sameInts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

// blockCompaction makes every rewrite of the journal at path fail, as a
// full disk does: its temporary file cannot be written.
func blockCompaction(t *testing.T, path string) func() {
	t.Helper()
	if err := os.Mkdir(path+".tmp", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path+".tmp", "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.RemoveAll(path + ".tmp"); err != nil {
			t.Fatal(err)
		}
	}
}

// Open rewrites the file to compact it, which needs room for a copy: on a
// full disk it opens all the same, and the journal keeps working.
func TestOpenNeedsNoSpace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	j.Put("a", obj{1})
	j.Put("a", obj{2})
	j.Put("b", obj{3})
	j.Close()
	unblock := blockCompaction(t, path)
	j, err = Open(path)
	if err != nil {
		t.Fatalf("open without room to compact: %v", err)
	}
	if err := j.Put("c", obj{4}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a": 2, "b": 3, "c": 4}
	if got := values(t, j); !sameInts(got, want) {
		t.Fatalf("live = %v, want %v", got, want)
	}
	j.Close()
	unblock()
	assertReload(t, path, want)
}

// A compaction that fails does not fail the change that made it due; it is
// tried again later, and succeeds once there is room.
func TestFailedCompactionIsDeferred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	unblock := blockCompaction(t, path)
	for i := 0; i < 2*compactAfter; i++ {
		if err := j.Put("a", obj{i}); err != nil {
			t.Fatalf("put %d while compaction fails: %v", i, err)
		}
	}
	unblock()
	for i := 0; i < compactAfter; i++ {
		if err := j.Put("a", obj{i}); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n > compactAfter+1 {
		t.Errorf("journal has %d lines once compaction could run again", n)
	}
	assertReload(t, path, map[string]int{"a": compactAfter - 1})
}

// A partial last line, left by a write cut short before a crash, is cut
// off when the journal opens, and the next change lands on a line of its
// own.
func TestOpenCutsPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	whole := `{"id":"a","value":{"n":1}}` + "\n"
	if err := os.WriteFile(path, []byte(whole+`{"id":"b","value":{"n":2}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	unblock := blockCompaction(t, path)
	defer unblock()
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if data, _ := os.ReadFile(path); string(data) != whole {
		t.Errorf("file after open = %q, want the whole line only", data)
	}
	if err := j.Put("c", obj{3}); err != nil {
		t.Fatal(err)
	}
	assertReload(t, path, map[string]int{"a": 1, "c": 3})
}
