package service

import (
	"encoding/json"
	"syscall"
	"testing"

	"github.com/warmpod/warmpod/runtime/shim"
)

// fakeJournal keeps the last value put per id, and refuses every write
// while full is set, as a journal on a full state dir does.
type fakeJournal struct {
	full bool
	live map[string]shim.Record
}

func (f *fakeJournal) Put(id string, v any) error {
	if f.full {
		return syscall.ENOSPC
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var r shim.Record
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	f.live[id] = r
	return nil
}

func (f *fakeJournal) Delete(id string) error {
	if f.full {
		return syscall.ENOSPC
	}
	delete(f.live, id)
	return nil
}

func (f *fakeJournal) Close() error { return nil }

// A change refused by a full state dir is not lost: it is written with the
// next one that lands, a removal as a record.
func TestRecordStoreWritesRefusedRecordsAgain(t *testing.T) {
	j := &fakeJournal{live: map[string]shim.Record{}}
	r := &recordStore{j: j, unsaved: map[string]*shim.Record{}}
	put := func(rec shim.Record) error { return r.put(rec) }
	for _, id := range []string{"a", "b", "c"} {
		if err := put(shim.Record{ID: id, State: shim.StateRunning}); err != nil {
			t.Fatal(err)
		}
	}
	j.full = true
	for _, id := range []string{"a", "b", "c"} {
		if err := put(shim.Record{ID: id, State: shim.StateExited, ExitCode: 137}); err == nil {
			t.Fatalf("put %s on a full disk succeeded", id)
		}
	}
	if err := r.delete("c"); err == nil {
		t.Fatal("delete on a full disk succeeded")
	}
	j.full = false
	if err := put(shim.Record{ID: "d", State: shim.StateCreated}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]shim.State{"a": shim.StateExited, "b": shim.StateExited, "d": shim.StateCreated} {
		if got := j.live[id]; got.State != want {
			t.Errorf("journal has %s %v, want %v", id, got.State, want)
		}
	}
	if got, ok := j.live["c"]; ok {
		t.Errorf("journal has the removed c as %v: its refused removal was lost", got.State)
	}
	if len(r.unsaved) != 0 {
		t.Errorf("records still unsaved: %v", r.unsaved)
	}
}
