// Package shim is the contract between the daemon and a pod's shim: what the
// two processes share besides the gRPC protocol (api/shim/v1). Both sides
// import it; it holds no implementation of either.
//
//   - Config: the pod's configuration, which the daemon writes to
//     DIR/pod.json (WriteConfig) before it starts "warmpod shim --state DIR",
//     and the shim reads (ReadConfig).
//   - The files in the state dir: the socket the shim serves on (SocketPath,
//     SocketAddr), its pid and log files, the pinned pod pid namespace, and
//     the readiness descriptor a starting shim reports on (ReadyFd).
//   - Record: the shim's account of one container (State, exit,
//     Termination, restart count). The shim appends it to the pod's
//     journal (DIR/containers.log) at every transition and sends it on the
//     wire as a ContainerState (ToProto, FromProto); the daemon reads the
//     journal (ReadRecords) when the shim is gone.
//   - Event: one container transition, as the shim publishes it.
//   - RestartRule: Kubernetes' container restart rules, validated by the
//     daemon (ParseRestartRules) and applied by the shim (MatchRule).
//   - RequestIDKey: the metadata that carries the daemon's request id into
//     the shim's log lines.
//
// The shim process itself is runtime/shim/service; the daemon's side,
// starting a shim and talking to it, is runtime/shim/client. The daemon
// never imports the service, as containerd's daemon never imports a shim's
// implementation: the two meet here and on the wire.
package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/atomicfile"
	"github.com/warmpod/warmpod/runtime/rootfs"
)

// ReadyFd is the descriptor on which a starting shim reports readiness
// ("ok\n") or the reason it could not start, then closes it.
const ReadyFd = 3

// PlacedFd is the descriptor on which a shim started with
// Config.WaitPlaced reads one byte before it does anything else (before it
// starts any process): the daemon writes it once it has moved the shim into
// the cgroup of its own and set its OOM score, so that everything the shim
// starts inherits both. End of file instead means the daemon gave up, and
// the shim exits.
const PlacedFd = 4

// Config is the pod-level configuration the daemon hands to a shim.
type Config struct {
	PodID string `json:"podID"`
	// StateDir holds the socket, pod.json, exit records and libcontainer
	// state (tmpfs, /run/warmpod/pods/<id>).
	StateDir string `json:"stateDir"`
	// RootDir holds the writable layers of the pod's containers
	// (/var/lib/warmpod/pods/<id>).
	RootDir string `json:"rootDir"`
	// CgroupParent is the pod cgroup; each generation gets a child of it.
	CgroupParent string `json:"cgroupParent"`
	// SharedPID asks for a pod-wide pid namespace, held by a pause process.
	SharedPID bool `json:"sharedPID"`
	// UserNS is the pod's user namespace, nil when the pod uses the
	// node's: every generation's rootfs is then made for its root.
	UserNS *rootfs.UserNS `json:"userNS,omitempty"`
	// InitContainers names the pod's init containers in order, when the pod
	// says so (annotation); otherwise roles are inferred from the order in
	// which containers are created and finish.
	InitContainers []string `json:"initContainers,omitempty"`
	// RestartRules, per container name, are applied by the shim the moment a
	// container exits (opt-in, see RestartRule).
	RestartRules map[string][]RestartRule `json:"restartRules,omitempty"`
	// RestartPolicy is the pod's restartPolicy (Always, OnFailure, Never):
	// with Never a reset stops at a failed init container instead of
	// retrying it.
	RestartPolicy string `json:"restartPolicy,omitempty"`
	// MaxPrecreate bounds how many generations may be pre-created at once on
	// the node (0: the number of CPUs).
	MaxPrecreate int `json:"maxPrecreate,omitempty"`
	// PrecreateLockDir holds the node-wide pre-creation tokens.
	PrecreateLockDir string `json:"precreateLockDir,omitempty"`
	LogLevel         string `json:"logLevel,omitempty"`
	// LogFormat is "text" (the default) or "json".
	LogFormat string `json:"logFormat,omitempty"`
	// WaitPlaced makes the shim wait on PlacedFd before it starts.
	WaitPlaced bool `json:"waitPlaced,omitempty"`
	// Spawner creates the pod's container generations (see
	// container.Options); "" is libcontainer.
	Spawner string `json:"spawner,omitempty"`
}

// MaxExecSyncOutput caps what a synchronous exec keeps of each of its
// streams (the kubelet's own limit on a CRI message).
const MaxExecSyncOutput = 16 << 20

// MaxMessageSize bounds a message between daemon and shim either way: an
// ExecSync reply with both streams full, or a large spec, fits; the 4 MiB
// gRPC default does not.
const MaxMessageSize = 2*MaxExecSyncOutput + 1<<20

// File names inside Config.StateDir.
const (
	ConfigFile = "pod.json"
	SocketFile = "shim.sock"
	PidFile    = "shim.pid"
	LogFile    = "shim.log"
	// JournalFile holds the container records (see ReadRecords).
	JournalFile = "containers.log"
	// PIDNamespaceFile is the pinned pod pid namespace, when the pod
	// shares one.
	PIDNamespaceFile = "pidns"
)

// targetPIDPrefix starts the pid namespace path of a container whose pid
// namespace is another container's (CRI namespace mode TARGET: an
// ephemeral container that debugs another).
const targetPIDPrefix = "warmpod-target-container:"

// TargetPIDNamespace is what the daemon writes, in a container's spec, as
// the path of a pid namespace that is container id's: the shim resolves it
// for every generation, from the generation id runs then. A path frozen at
// create (/proc/<pid>/ns/pid) would, once the target restarted, name the
// namespace of whatever process took its old pid.
func TargetPIDNamespace(id string) string { return targetPIDPrefix + id }

// TargetOfPIDNamespace returns the container a pid namespace path of
// TargetPIDNamespace names.
func TargetOfPIDNamespace(path string) (id string, ok bool) {
	return strings.CutPrefix(path, targetPIDPrefix)
}

// PIDNamespacePath is where a pod's shared pid namespace is pinned.
func PIDNamespacePath(stateDir string) string { return filepath.Join(stateDir, PIDNamespaceFile) }

// SocketPath is where the shim of the pod whose state is in stateDir listens.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, SocketFile) }

// maxSocketPath is what fits in a unix socket address (sun_path), with room
// for the terminating NUL.
const maxSocketPath = 107

// SocketAddr returns an address for binding or connecting to the shim socket
// of stateDir, and a function to call once the bind or connect is done. A
// state dir deep enough that the socket's path does not fit in a unix
// socket address is reached through an open descriptor of the directory
// (/proc/self/fd/N/shim.sock), which always fits.
func SocketAddr(stateDir string) (string, func(), error) {
	p := SocketPath(stateDir)
	if len(p) <= maxSocketPath {
		return p, func() {}, nil
	}
	fd, err := unix.Open(stateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open shim state dir: %w", err)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, SocketFile), func() { unix.Close(fd) }, nil
}

// WriteConfig stores cfg in its state dir for the shim to read.
func WriteConfig(cfg *Config) error {
	data, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(cfg.StateDir, ConfigFile), data, 0o600)
}

// ReadConfig loads the Config stored in stateDir.
func ReadConfig(stateDir string) (*Config, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("read pod config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse pod config %s: %w", filepath.Join(stateDir, ConfigFile), err)
	}
	if cfg.PodID == "" || cfg.StateDir == "" || cfg.RootDir == "" {
		return nil, errors.New("pod config lacks podID, stateDir or rootDir")
	}
	return &cfg, nil
}
