package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Default masked and read-only paths: the kernel interfaces that leak host information or let a container
// change the host, as every runtime hides them.
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// userMountOptions are the CRI mount_options a bind mount can honour: per-mountpoint flags. Anything
// else would be a filesystem option, which the kernel ignores on a bind mount (libcontainer refuses them).
var userMountOptions = map[string]bool{
	"nosuid": true, "suid": true, "nodev": true, "dev": true, "noexec": true, "exec": true,
	"noatime": true, "atime": true, "relatime": true, "norelatime": true, "strictatime": true,
	"nostrictatime": true, "nodiratime": true, "diratime": true, "nosymfollow": true, "symfollow": true,
}

// systemMounts are the filesystems every container gets. sysfs and the cgroup filesystem are read-only
// unless the container is privileged (api.proto: "Any sysfs and procfs mounts are mounted RW").
func systemMounts(privileged, sysBind, rro bool) []specs.Mount {
	ro := "ro"
	if privileged {
		ro = "rw"
	}
	sys := specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", ro}}
	if sysBind {
		// A user namespace may not mount a sysfs for a network namespace it does not own (the host's):
		// bind the host's instead, read-only all the way down.
		opt := "ro"
		if rro {
			opt = "rro"
		}
		sys = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", opt}}
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		sys,
		// With a cgroup namespace this shows the container's own cgroup; without one (cgroup v1, or a
		// privileged container) libcontainer bind-mounts the container's cgroup directories.
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", ro}},
	}
}

// podFileMounts binds the pod's /etc files and /dev/shm. The /etc files follow the root filesystem's
// read-only setting, as containerd does; /dev/shm stays writable.
func podFileMounts(pod *Pod, sec *Security) []Mount {
	var out []Mount
	for _, f := range []struct{ dst, src string }{
		{"/etc/hostname", pod.HostnameFile},
		{"/etc/hosts", pod.Hosts},
		{"/etc/resolv.conf", pod.ResolvConf},
	} {
		if f.src != "" {
			out = append(out, Mount{ContainerPath: f.dst, HostPath: f.src, Readonly: sec.ReadonlyRootfs})
		}
	}
	shm := pod.Shm
	if shm == "" && sec.Namespaces.IPC == NamespaceNode {
		shm = "/dev/shm"
	}
	if shm != "" {
		out = append(out, Mount{ContainerPath: "/dev/shm", HostPath: shm})
	}
	return out
}

// mountPlan carries what bind mounts decide beyond the mount list.
type mountPlan struct {
	rootfsPropagation string
}

// buildMounts merges the system mounts, the pod's files and the CRI mounts: a CRI mount replaces a pod
// file at the same destination, a bind mount replaces the system mounts at and under its destination, and
// of two CRI mounts at one destination the later wins. Bind mounts are ordered by depth so a mount never
// hides one below it.
func (b *Builder) buildMounts(c *Container, pod *Pod, sysBind bool) ([]specs.Mount, mountPlan, error) {
	var plan mountPlan
	user := make(map[string]int, len(c.Mounts)) // destination -> index of the winning CRI mount
	for i, m := range c.Mounts {
		// The kernel takes paths as C strings: a NUL would cut one short.
		if strings.ContainsRune(m.ContainerPath, 0) || strings.ContainsRune(m.HostPath, 0) {
			return nil, plan, invalidf("mounts[%d]: path %q or %q holds a NUL byte", i, m.ContainerPath, m.HostPath)
		}
		if !filepath.IsAbs(m.ContainerPath) {
			return nil, plan, invalidf("mounts[%d]: container path %q is not absolute", i, m.ContainerPath)
		}
		dst := filepath.Clean(m.ContainerPath)
		if dst == "/" {
			return nil, plan, invalidf("mounts[%d]: cannot mount over the container's root", i)
		}
		user[dst] = i
	}

	type namedBind struct {
		Mount
		name string // for errors
	}
	var binds []namedBind
	for _, m := range podFileMounts(pod, &c.Security) {
		if _, ok := user[m.ContainerPath]; !ok {
			binds = append(binds, namedBind{m, fmt.Sprintf("pod file %q", m.ContainerPath)})
		}
	}
	for i, m := range c.Mounts {
		if user[filepath.Clean(m.ContainerPath)] == i {
			binds = append(binds, namedBind{m, fmt.Sprintf("mounts[%d] %q", i, m.ContainerPath)})
		}
	}
	taken := make(map[string]bool, len(binds))
	for _, m := range binds {
		taken[filepath.Clean(m.ContainerPath)] = true
	}

	var out []specs.Mount
	for _, m := range systemMounts(c.Security.Privileged, sysBind, b.host.RecursiveReadOnly) {
		if !shadowed(m.Destination, taken) {
			out = append(out, m)
		}
	}

	bound := make([]specs.Mount, len(binds))
	for i, m := range binds {
		sm, err := b.bindMount(m.Mount, &plan)
		if err != nil {
			return nil, plan, invalidf("%s: %w", m.name, err)
		}
		bound[i] = sm
	}
	slices.SortStableFunc(bound, func(x, y specs.Mount) int { return depth(x.Destination) - depth(y.Destination) })
	return append(out, bound...), plan, nil
}

// bindMount validates one bind mount against the host and converts it.
func (b *Builder) bindMount(m Mount, plan *mountPlan) (specs.Mount, error) {
	if !filepath.IsAbs(m.HostPath) {
		return specs.Mount{}, invalidf("host path %q is not absolute", m.HostPath)
	}
	// api.proto: a missing host path is an error (the kubelet creates hostPath volumes it is asked to);
	// containerd creates it instead, but a directory appearing where a file was meant would hide the fault.
	src, err := b.sys.EvalSymlinks(m.HostPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return specs.Mount{}, invalidf("host path %q does not exist", m.HostPath)
		}
		return specs.Mount{}, invalidf("resolve host path %q: %w", m.HostPath, err)
	}

	opts := []string{"rbind"}
	switch m.Propagation {
	case PropagationPrivate:
		opts = append(opts, "rprivate")
	case PropagationHostToContainer:
		if err := b.needPropagation(src, "shared", "slave"); err != nil {
			return specs.Mount{}, err
		}
		opts = append(opts, "rslave")
		if plan.rootfsPropagation != "rshared" {
			plan.rootfsPropagation = "rslave"
		}
	case PropagationBidirectional:
		if err := b.needPropagation(src, "shared"); err != nil {
			return specs.Mount{}, err
		}
		opts = append(opts, "rshared")
		plan.rootfsPropagation = "rshared"
	default:
		return specs.Mount{}, invalidf("unknown propagation %d", m.Propagation)
	}

	readonly := m.Readonly || m.Image
	switch {
	case m.RecursiveReadOnly && !readonly:
		return specs.Mount{}, invalidf("recursive read-only needs the mount read-only")
	case m.RecursiveReadOnly && m.Propagation != PropagationPrivate:
		return specs.Mount{}, invalidf("recursive read-only needs private propagation")
	case m.RecursiveReadOnly && !b.host.RecursiveReadOnly:
		return specs.Mount{}, invalidf("recursive read-only mounts need Linux 5.12 or later")
	case m.RecursiveReadOnly:
		opts = append(opts, "rro")
	case readonly:
		opts = append(opts, "ro")
	default:
		opts = append(opts, "rw")
	}
	for _, o := range m.Options {
		if !userMountOptions[o] {
			return specs.Mount{}, invalidf("mount option %q is not a per-mount flag a bind mount can apply", o)
		}
		opts = append(opts, o)
	}

	if (m.UIDMappings == nil) != (m.GIDMappings == nil) {
		return specs.Mount{}, invalidf("an id-mapped mount needs both uid and gid mappings")
	}
	return specs.Mount{
		Destination: filepath.Clean(m.ContainerPath),
		Type:        "bind",
		Source:      src,
		Options:     opts,
		UIDMappings: idMappings(m.UIDMappings),
		GIDMappings: idMappings(m.GIDMappings),
	}, nil
}

// needPropagation checks that the host mount holding src propagates events to us: rslave and rshared
// bind mounts of a private mount silently receive nothing.
func (b *Builder) needPropagation(src string, allowed ...string) error {
	prop, mountpoint, err := b.sys.MountPropagation(src)
	if err != nil {
		return invalidf("look up the mount holding %q: %w", src, err)
	}
	if !slices.Contains(allowed, prop) {
		return invalidf("host path %q is on mount %q, which is %s; the requested propagation needs it %s",
			src, mountpoint, prop, strings.Join(allowed, " or "))
	}
	return nil
}

func depth(p string) int { return strings.Count(p, "/") }

// shadowed reports whether a bind mount takes dst or one of its parents: a system mount there would be
// replaced, or hidden under the bind mount (a CRI /dev takes /dev/pts and the rest with it).
func shadowed(dst string, taken map[string]bool) bool {
	for p := dst; p != "/"; p = filepath.Dir(p) {
		if taken[p] {
			return true
		}
	}
	return false
}
