package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Shape is what of a create request, besides its spec, shapes the
// container's process.
type Shape struct {
	// Layers are the image's unpacked layer directories, bottom first.
	Layers                []string
	Tty, Stdin, StdinOnce bool
	StopSignal            int
	// TerminationMessagePath is the container path of the kubelet's
	// termination message file (api/shim/v1 CreateContainerRequest), ""
	// when the spec binds none.
	TerminationMessagePath string
}

// ProcessKey identifies the process shape that spec and sh ask for: a
// generation pre-created for one container serves a later create whose key
// is equal. What changes per attempt or per generation is left out: the
// annotations (the kubelet's restart count), the root path and cgroup (set
// per generation), the host file bound at the termination message path
// (new for every container the kubelet creates; the shim binds its own),
// and the order of the environment: the kubelet lists a container's
// variables and the service variables from maps, in another order every
// time, so no workload can rely on it; the variables and their values
// count. spec is not changed.
func ProcessKey(spec *specs.Spec, sh Shape) (string, error) {
	canon := *spec
	canon.Annotations = nil
	if spec.Process != nil {
		proc := *spec.Process
		proc.Env = canonicalEnv(proc.Env)
		canon.Process = &proc
	}
	if spec.Root != nil {
		root := *spec.Root
		root.Path = ""
		canon.Root = &root
	}
	if spec.Linux != nil {
		linux := *spec.Linux
		linux.CgroupsPath = ""
		canon.Linux = &linux
	}
	if sh.TerminationMessagePath != "" {
		i := TerminationMount(spec, sh.TerminationMessagePath)
		if i < 0 {
			return "", fmt.Errorf("termination message path %q is not a bind mount of the spec: %w", sh.TerminationMessagePath, errdefs.ErrInvalidArgument)
		}
		canon.Mounts = append([]specs.Mount(nil), spec.Mounts...)
		canon.Mounts[i].Source = ""
	}
	data, err := json.Marshal(&canon)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(data)
	fmt.Fprintf(h, "\x00%s\x00%t%t%t%d\x00%s", strings.Join(sh.Layers, "\x00"), sh.Tty, sh.Stdin, sh.StdinOnce, sh.StopSignal, sh.TerminationMessagePath)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TerminationMount returns the index in spec.Mounts of the bind mount at
// container path dst (the kubelet's termination message file), or -1 when
// there is none. The spec has one mount per destination; the last wins.
func TerminationMount(spec *specs.Spec, dst string) int {
	dst = filepath.Clean(dst)
	for i := len(spec.Mounts) - 1; i >= 0; i-- {
		m := spec.Mounts[i]
		if m.Type == "bind" && filepath.Clean(m.Destination) == dst {
			return i
		}
	}
	return -1
}

// canonicalEnv is env as a set of variables: the last entry of each name
// (the one a spec built by runtime/oci keeps), sorted.
func canonicalEnv(env []string) []string {
	last := make(map[string]string, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		last[name] = kv
	}
	out := make([]string, 0, len(last))
	for _, kv := range last {
		out = append(out, kv)
	}
	slices.Sort(out)
	return out
}
