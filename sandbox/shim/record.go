package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// Record is what the shim knows about one container. It is written to
// StateDir/containers/<id>.json at every transition, so that the daemon can
// read exits even when the shim is gone.
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

func recordPath(stateDir, id string) string {
	return filepath.Join(stateDir, recordsDir, id+".json")
}

func writeRecord(stateDir string, r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(recordPath(stateDir, r.ID), data); err != nil {
		return fmt.Errorf("record state of container %s: %w", r.ID, err)
	}
	return nil
}

func removeRecord(stateDir, id string) error {
	if err := os.Remove(recordPath(stateDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record of container %s: %w", id, err)
	}
	return nil
}

// ReadRecords returns every container record left in a pod's state dir. The
// daemon uses it when the pod's shim is not running: a container recorded as
// created or running there has lost its parent, and its fate is unknown.
func ReadRecords(stateDir string) ([]Record, error) {
	entries, err := os.ReadDir(filepath.Join(stateDir, recordsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read container records: %w", err)
	}
	var out []Record
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(stateDir, recordsDir, name))
		if err != nil {
			continue
		}
		var r Record
		if json.Unmarshal(data, &r) != nil || r.ID == "" {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}
