package shim

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/warmpod/warmpod/runtime/journal"
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
	// ReasonStartError is a run that never began: the container's process
	// could not be made or released (exit code 128, as containerd and
	// CRI-O report it).
	ReasonStartError = "StartError"
)

// StartErrorExitCode is the exit code of a run that ended in StartError.
const StartErrorExitCode = 128

// Termination is one finished run of a container.
type Termination struct {
	ExitCode   int32  `json:"exitCode"`
	StartedAt  int64  `json:"startedAt"`
	FinishedAt int64  `json:"finishedAt"`
	Reason     string `json:"reason"`
	Message    string `json:"message,omitempty"`
}

// Record is the shim's account of one container: its state, its current
// run and the run before. The shim appends it to the pod's journal
// (StateDir/containers.log) at every transition, so that the daemon can
// read exits even when the shim is gone, and sends it in every answer and
// event (ToProto); the daemon keeps the latest it saw as the container's
// status. In warmpod "record" means this and nothing else.
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
	// FromWarm tells whether the current generation was pre-created (as
	// opposed to created when it was asked for).
	FromWarm bool `json:"fromWarm,omitempty"`
	// ReadyGenerations counts the pre-created next generations ready.
	ReadyGenerations uint32 `json:"readyGenerations,omitempty"`
	// Precreating tells whether next generations are being made or are
	// wanted: false once pre-creation has settled.
	Precreating bool `json:"precreating,omitempty"`
}

// JournalPath is the pod's journal of container records.
func JournalPath(stateDir string) string { return filepath.Join(stateDir, JournalFile) }

// ReadRecords returns every container record a pod's shim left in its state
// dir. The daemon uses it when the pod's shim is not running: a container
// recorded as created or running there has lost its parent, and its fate is
// unknown.
func ReadRecords(stateDir string) ([]Record, error) {
	live, ids, err := journal.Read(JournalPath(stateDir))
	if err != nil {
		return nil, fmt.Errorf("read container records: %w", err)
	}
	out := make([]Record, 0, len(ids))
	for _, id := range ids {
		var r Record
		if json.Unmarshal(live[id], &r) == nil && r.ID != "" {
			out = append(out, r)
		}
	}
	return out, nil
}
