package service

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/warmpod/warmpod/runtime/shim"
)

// A container whose pid namespace is another container's (CRI namespace
// mode TARGET) joins, in each of its generations, the namespace of the
// target's generation of the moment: the daemon names the target in the
// spec (shim.TargetPIDNamespace), never a /proc path, which the target's
// next generation would leave to any process that takes its pid.
//
// Such a container is, in Kubernetes, an ephemeral container: kubectl
// debug --target. The kubelet marks ephemeral containers in no CRI field,
// label or annotation of every version (its labels name the pod and the
// container, its annotations carry the hash, restart count and termination
// settings of any container), so the shim takes a TARGET pid namespace as
// the sign: such a container is ephemeral. KEP-5532 has a pod restart
// terminate ephemeral containers, not restart them, and the kubelet never
// restarts them: the shim neither restarts them (a reset kills them, a
// restart rule does not apply) nor pre-creates their next generation. An
// ephemeral container without a target cannot be told from any other.

// targetOf returns the container whose pid namespace spec joins, if any.
func targetOf(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			if id, ok := shim.TargetOfPIDNamespace(ns.Path); ok {
				return id
			}
		}
	}
	return ""
}

// joinTarget points spec's pid namespace at the one t's target container
// runs in now, and returns the function to call once the generation has
// joined it.
func (s *Shim) joinTarget(t *template, spec *specs.Spec) (func(), error) {
	if t.target == "" {
		return func() {}, nil
	}
	f, err := s.targetPIDNamespace(t)
	if err != nil {
		return nil, err
	}
	// The generation's init is another process: it reaches the namespace
	// through the shim's descriptor, held until it has joined.
	path := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			spec.Linux.Namespaces[i].Path = path
		}
	}
	return func() { f.Close() }, nil
}

// targetPIDNamespace opens the pid namespace of the generation that t's
// target container runs now.
func (s *Shim) targetPIDNamespace(t *template) (*os.File, error) {
	fail := func(why string) error {
		return fmt.Errorf("target container %q of container %q's pid namespace %s: %w", t.target, t.name, why, errdefs.ErrFailedPrecondition)
	}
	s.mu.Lock()
	c := s.containers[t.target]
	s.mu.Unlock()
	if c == nil {
		return nil, fail("is gone")
	}
	c.mu.Lock()
	g, st := c.gen, c.rec.State
	c.mu.Unlock()
	if st != shim.StateRunning || g == nil {
		return nil, fail(fmt.Sprintf("is %s, not running", st))
	}
	pid := g.c.Init.Pid()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return nil, fail("has exited")
	}
	// The pid is the target's only while its process lives: had it died
	// before the open, f could be another process's namespace.
	if start, err := procStart(pid); err != nil || start != g.start {
		f.Close()
		return nil, fail("has exited")
	}
	return f, nil
}

// procStart reads when process pid started (in clock ticks since boot):
// with the pid, it names one process for good.
func procStart(pid int) (uint64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(stat)
	// The command name, which may hold anything, ends at the last ')';
	// starttime is the 22nd field, the 20th after it.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
