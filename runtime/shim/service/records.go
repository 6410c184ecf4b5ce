package service

import (
	"sync"

	"github.com/warmpod/warmpod/runtime/journal"
	"github.com/warmpod/warmpod/runtime/shim"
)

// recordStore is the pod's journal of container records (shim.JournalPath),
// which the daemon reads once the shim is gone. A change the journal could
// not take (a full state dir) is kept and written again with the next one
// that lands: once space returns, the journal holds every container's
// latest state, not the one before a failed write.
type recordStore struct {
	j recordJournal

	// mu guards unsaved, and orders the journal's writes with it. A leaf:
	// only the journal's own lock is taken under it.
	mu sync.Mutex
	// unsaved holds, by container id, the latest change the journal
	// refused: a record, or nil for a removal.
	unsaved map[string]*shim.Record
}

// recordJournal is what recordStore needs of a journal.Journal.
type recordJournal interface {
	Put(id string, v any) error
	Delete(id string) error
	Close() error
}

func openRecords(stateDir string) (*recordStore, error) {
	j, err := journal.Open(shim.JournalPath(stateDir))
	if err != nil {
		return nil, err
	}
	return &recordStore{j: j, unsaved: map[string]*shim.Record{}}, nil
}

// put journals rec, and then the changes refused before it.
func (r *recordStore) put(rec shim.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeLocked(rec.ID, &rec)
}

// delete journals the removal of container id, and then the changes
// refused before it.
func (r *recordStore) delete(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeLocked(id, nil)
}

// writeLocked journals the change of id (rec, or nil for its removal); once
// one lands, those refused before follow.
// Preconditions: r.mu held.
func (r *recordStore) writeLocked(id string, rec *shim.Record) error {
	if err := r.change(id, rec); err != nil {
		r.unsaved[id] = rec
		return err
	}
	delete(r.unsaved, id)
	for id, rec := range r.unsaved {
		if r.change(id, rec) != nil {
			break
		}
		delete(r.unsaved, id)
	}
	return nil
}

func (r *recordStore) change(id string, rec *shim.Record) error {
	if rec == nil {
		return r.j.Delete(id)
	}
	return r.j.Put(id, rec)
}

func (r *recordStore) close() error { return r.j.Close() }
