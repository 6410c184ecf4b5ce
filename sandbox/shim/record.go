package shim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// State of a container as the shim tracks it.
//
//	CreateContainer ──▶ Created ──StartContainer──▶ Running ──exit──▶ Exited
//	                       │                           ▲                 │
//	                       └───────────kill────────────┼────────────────▶│
//	                                                   └──── reset ──────┘
//
// A reset takes a Running or Exited container back to Running (after its
// init-container predecessors completed), keeping its id and bumping
// RestartCount; the previous exit becomes LastTermination.
type State int

const (
	StateUnknown State = iota
	StateCreated
	StateRunning
	StateExited
)

func (s State) String() string {
	switch s {
	case StateCreated:
		return "created"
	case StateRunning:
		return "running"
	case StateExited:
		return "exited"
	}
	return "unknown"
}

// Exit reasons, as CRI reports them.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
	ReasonUnknown   = "Unknown"
)

// Termination is one finished run of a container.
type Termination struct {
	ExitCode   int32  `json:"exitCode"`
	StartedAt  int64  `json:"startedAt"`
	FinishedAt int64  `json:"finishedAt"`
	Reason     string `json:"reason"`
	Message    string `json:"message,omitempty"`
}

// Record is what the shim knows about one container. It is appended to the
// pod's journal (StateDir/containers.log) at every transition, so that the
// daemon can read exits even when the shim is gone.
type Record struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	State      State  `json:"state"`
	Pid        int    `json:"pid,omitempty"`
	CreatedAt  int64  `json:"createdAt"`
	StartedAt  int64  `json:"startedAt,omitempty"`
	FinishedAt int64  `json:"finishedAt,omitempty"`
	ExitCode   int32  `json:"exitCode"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	LogPath    string `json:"logPath,omitempty"`
	CgroupPath string `json:"cgroupPath,omitempty"`
	UpperDir   string `json:"upperDir,omitempty"`
	// RestartCount counts in-place restarts done by the shim (resets and
	// restart rules) under the same container id.
	RestartCount    uint32       `json:"restartCount,omitempty"`
	LastTermination *Termination `json:"lastTermination,omitempty"`
	// Warm tells whether a pre-created next generation is ready.
	Warm bool `json:"warm,omitempty"`
}

// journal is a pod's append-only log of container records: one JSON line
// per transition, the last line of a container winning. An append is one
// write(2) to an open file, where replacing a file per transition costs a
// create and a rename, which on a disk-backed state dir take up to a
// millisecond each on the reset path. It is compacted as it grows.
type journal struct {
	path string

	mu    sync.Mutex
	f     *os.File
	lines int
	live  map[string][]byte
}

// journalLine is one entry: a record, or the removal of a container.
type journalLine struct {
	Record
	Deleted bool `json:"deleted,omitempty"`
}

const compactAfter = 1024

func journalPath(stateDir string) string { return filepath.Join(stateDir, journalFile) }

func openJournal(stateDir string) (*journal, error) {
	j := &journal{path: journalPath(stateDir), live: map[string][]byte{}}
	// Keep what a previous shim of this pod recorded, if anything.
	recs, err := ReadRecords(stateDir)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		data, err := json.Marshal(&journalLine{Record: recs[i]})
		if err != nil {
			return nil, err
		}
		j.live[recs[i].ID] = data
	}
	if err := j.compactLocked(); err != nil {
		return nil, err
	}
	return j, nil
}

func (j *journal) put(r *Record) error {
	data, err := json.Marshal(&journalLine{Record: *r})
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.live[r.ID] = data
	return j.appendLocked(data)
}

func (j *journal) remove(id string) error {
	data, err := json.Marshal(&journalLine{Record: Record{ID: id}, Deleted: true})
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.live, id)
	return j.appendLocked(data)
}

func (j *journal) appendLocked(data []byte) error {
	if j.f == nil {
		return os.ErrClosed
	}
	if _, err := j.f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("append to %s: %w", j.path, err)
	}
	j.lines++
	if j.lines > compactAfter && j.lines > 4*len(j.live) {
		return j.compactLocked()
	}
	return nil
}

// compactLocked rewrites the journal with one line per live container.
func (j *journal) compactLocked() error {
	var buf []byte
	for _, data := range j.live {
		buf = append(buf, data...)
		buf = append(buf, '\n')
	}
	if err := writeFileAtomic(j.path, buf); err != nil {
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
	j.lines = len(j.live)
	return nil
}

func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}

// ReadRecords returns every container record a pod's shim left in its state
// dir. The daemon uses it when the pod's shim is not running: a container
// recorded as created or running there has lost its parent, and its fate is
// unknown. A torn last line (a crash mid-append) is skipped.
func ReadRecords(stateDir string) ([]Record, error) {
	f, err := os.Open(journalPath(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read container records: %w", err)
	}
	defer f.Close()
	byID := map[string]Record{}
	var order []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l journalLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.ID == "" {
			continue
		}
		if l.Deleted {
			delete(byID, l.ID)
			continue
		}
		if _, ok := byID[l.ID]; !ok {
			order = append(order, l.ID)
		}
		byID[l.ID] = l.Record
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read container records: %w", err)
	}
	out := make([]Record, 0, len(byID))
	for _, id := range order {
		if r, ok := byID[id]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}
