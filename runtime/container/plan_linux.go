package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Phases a fast generation's init reports the end of (see Gen.Phases).
const (
	phaseStart = iota
	phaseCgroup
	phaseNamespaces
	phaseMounts
	phaseDevices
	phasePivot
	phasePaths
	phaseCreds
	phaseSeccomp
	numPhases
)

var phaseNames = [numPhases]string{"start", "cgroup", "namespaces", "mounts", "devices", "pivot", "paths", "creds", "seccomp"}

// unsupported tells why the fast spawner cannot make the container cfg
// describes, or "" when it can. The fast spawner makes what libcontainer
// makes for the configurations warmpod builds; anything outside them is left
// to libcontainer rather than half-supported:
//
//   - user namespaces (id mappings, a joined user namespace) and id-mapped or
//     recursively read-only mounts;
//   - AppArmor profiles and SELinux labels;
//   - OCI hooks (CDI devices can bring them);
//   - a terminal (the console is made inside the container);
//   - a new network namespace (libcontainer brings its loopback up), a
//     joined mount namespace, a time namespace;
//   - cgroup namespaces on cgroup v1, the systemd cgroup driver;
//   - seccomp notification (SCMP_ACT_NOTIFY, a listener);
//   - the scheduler, I/O priority, personality, memory policy, CPU
//     affinity, Intel RDT, parent death signal and net devices settings.
func unsupported(cfg *configs.Config, p *specs.Process) string {
	switch {
	case p == nil:
		return "no process"
	case p.Terminal:
		return "terminal"
	case p.ApparmorProfile != "" || cfg.AppArmorProfile != "":
		return "apparmor profile"
	case p.SelinuxLabel != "" || cfg.ProcessLabel != "" || cfg.MountLabel != "":
		return "selinux label"
	case len(cfg.UIDMappings) > 0 || len(cfg.GIDMappings) > 0:
		return "user namespace"
	case cfg.NoPivotRoot:
		return "no pivot root"
	case cfg.ParentDeathSignal != 0:
		return "parent death signal"
	case len(cfg.NetDevices) > 0 || len(cfg.Networks) > 0 || len(cfg.Routes) > 0:
		return "network setup"
	case cfg.IntelRdt != nil:
		return "intel rdt"
	case cfg.MemoryPolicy != nil:
		return "memory policy"
	case cfg.RootlessEUID || cfg.RootlessCgroups:
		return "rootless"
	case len(cfg.TimeOffsets) > 0:
		return "time offsets"
	case cfg.Scheduler != nil:
		return "scheduler"
	case cfg.Personality != nil:
		return "personality"
	case cfg.IOPriority != nil:
		return "io priority"
	case cfg.ExecCPUAffinity != nil:
		return "cpu affinity"
	case cfg.Cgroups == nil || cfg.Cgroups.Path == "" || cfg.Cgroups.Systemd:
		return "cgroup driver"
	}
	for _, h := range cfg.Hooks {
		if len(h) > 0 {
			return "hooks"
		}
	}
	if s := cfg.Seccomp; s != nil {
		if s.ListenerPath != "" || s.DefaultAction == configs.Notify {
			return "seccomp notify"
		}
		for _, c := range s.Syscalls {
			if c != nil && c.Action == configs.Notify {
				return "seccomp notify"
			}
		}
	}
	if !cfg.Namespaces.Contains(configs.NEWNS) || cfg.Namespaces.PathOf(configs.NEWNS) != "" {
		return "mount namespace"
	}
	for _, ns := range cfg.Namespaces {
		switch ns.Type {
		case configs.NEWUSER:
			return "user namespace"
		case configs.NEWTIME:
			return "time namespace"
		case configs.NEWNET:
			if ns.Path == "" {
				return "new network namespace"
			}
		case configs.NEWCGROUP:
			if ns.Path != "" {
				return "joined cgroup namespace"
			}
			if !cgroups.IsCgroup2UnifiedMode() {
				return "cgroup namespace on cgroup v1"
			}
		}
	}
	for _, m := range cfg.Mounts {
		switch {
		case m.IDMapping != nil:
			return "id-mapped mount"
		case m.RecAttr != nil:
			return "recursive mount attributes"
		case m.Extensions != 0:
			return "mount extensions"
		}
		switch m.Device {
		case "proc", "sysfs", "tmpfs", "mqueue", "devpts", "bind", "cgroup":
		default:
			return "mount of type " + m.Device
		}
	}
	return ""
}

// seccompFilter is a container's seccomp program as libcontainer loads it.
type seccompFilter struct {
	flags uint32
	prog  []unix.SockFilter
}

// planInput is everything one generation's plan is made of.
type planInput struct {
	id      string
	cfg     *configs.Config
	proc    *specs.Process
	seccomp *seccompFilter
	// joins are the cgroup dirs the init joins itself (cgroup v1 and
	// hybrid); on cgroup v2 it is cloned into its cgroup instead.
	joins []string
	// cgroupBinds are the cgroup v1 hierarchies mounted in the container.
	cgroupBinds []cgroupBind
	idle        bool
}

type cgroupBind struct{ source, dest string }

// hostFacts are facts about the node a plan depends on, found once.
var hostFacts = sync.OnceValues(func() (facts struct {
	lastCap uint32
	caps    map[string]uint32
	kcore   bool
}, err error) {
	last, err := capability.LastCap()
	if err != nil {
		return facts, err
	}
	facts.lastCap = uint32(last)
	list, err := capability.ListSupported()
	if err != nil {
		return facts, err
	}
	facts.caps = make(map[string]uint32, len(list))
	for _, c := range list {
		facts.caps["CAP_"+strings.ToUpper(c.String())] = uint32(c)
	}
	_, err = os.Stat("/proc/kcore")
	facts.kcore = err == nil
	return facts, nil
})

// buildPlan writes the plan that makes, step by step and in libcontainer's
// order, the container libcontainer's init makes from the same config.
// It returns the clone flags and the pid namespace the fork server creates
// the init in, with the plan.
func buildPlan(in *planInput) (cloneFlags uint64, pidNS string, plan []byte, err error) {
	facts, err := hostFacts()
	if err != nil {
		return 0, "", nil, err
	}
	cfg, p := in.cfg, in.proc
	w := &planWriter{}
	w.op(opPhase).u32(phaseStart)
	if in.idle {
		w.op(opSchedIdle)
	}

	// Cgroup first, so all the set-up is accounted to the container.
	for _, dir := range in.joins {
		w.op(opCgroupJoin).str(dir)
	}
	var joins []configs.Namespace
	for _, ns := range cfg.Namespaces {
		switch ns.Type {
		case configs.NEWNS:
			cloneFlags |= unix.CLONE_NEWNS
		case configs.NEWPID:
			if ns.Path == "" {
				cloneFlags |= unix.CLONE_NEWPID
			} else {
				pidNS = ns.Path
			}
		case configs.NEWUTS, configs.NEWIPC:
			if ns.Path == "" {
				cloneFlags |= uint64(ns.Syscall())
			} else {
				joins = append(joins, ns)
			}
		case configs.NEWNET:
			joins = append(joins, ns)
		case configs.NEWCGROUP:
			// Only once in its cgroup, which becomes the namespace's root.
			w.op(opUnshare).u32(unix.CLONE_NEWCGROUP)
		}
	}
	w.op(opPhase).u32(phaseCgroup)
	if cfg.OomScoreAdj != nil {
		w.op(opOOMScore).str(strconv.Itoa(*cfg.OomScoreAdj))
	}
	if len(joins) > 0 {
		w.op(opNonDumpable)
	}
	for _, ns := range joins {
		w.op(opSetns).u32(uint32(ns.Syscall())).str(ns.Path)
	}
	w.op(opSetsid)
	w.op(opPhase).u32(phaseNamespaces)

	if !cfg.NoNewKeyring {
		// Without a user namespace: search permission for the owner's uid.
		w.op(opKeyring).str("_ses." + in.id).u32(0xffffffff).u32(0x80000)
	}
	w.op(opPrepareRoot).u32(uint32(cfg.RootPropagation))
	unified := cgroups.IsCgroup2UnifiedMode()
	setupDev := true
	for _, m := range cfg.Mounts {
		dest := filepath.Clean(m.Destination)
		if m.Device == "bind" && dest == "/dev" {
			setupDev = false
		}
		switch m.Device {
		case "proc", "sysfs":
			writeMount(w, mountProcSys, m.Flags, m.ClearedFlags, m.PropagationFlags, m.Source, dest, m.Device, m.Data)
		case "bind":
			writeMount(w, mountBind, m.Flags, m.ClearedFlags, m.PropagationFlags, m.Source, dest, m.Device, m.Data)
		case "cgroup":
			if unified {
				writeMount(w, mountCgroup2, m.Flags, m.ClearedFlags, nil, m.Source, dest, "cgroup2", m.Data)
				continue
			}
			// A tmpfs with a bind of the container's own cgroup of each
			// hierarchy, as libcontainer mounts cgroup v1.
			const defaultMountFlags = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
			writeMount(w, mountGeneric, defaultMountFlags, 0, m.PropagationFlags, "tmpfs", dest, "tmpfs", "mode=755")
			var merged []string
			for _, b := range in.cgroupBinds {
				writeMount(w, mountBind, unix.MS_BIND|unix.MS_REC|m.Flags, 0, m.PropagationFlags, b.source, b.dest, "bind", "")
				if ss := filepath.Base(b.dest); strings.Contains(ss, ",") {
					merged = append(merged, ss)
				}
			}
			for _, mc := range merged {
				for ss := range strings.SplitSeq(mc, ",") {
					w.op(opSymlink).str(mc).str(filepath.Join(dest, ss))
				}
			}
		default:
			writeMount(w, mountGeneric, m.Flags, m.ClearedFlags, m.PropagationFlags, m.Source, dest, m.Device, m.Data)
		}
	}
	w.op(opPhase).u32(phaseMounts)
	if setupDev {
		for _, d := range cfg.Devices {
			if d.Path == "" || filepath.Clean(d.Path) == "/dev/ptmx" {
				continue
			}
			mode := uint32(d.FileMode)
			switch d.Type {
			case devices.BlockDevice:
				mode |= unix.S_IFBLK
			case devices.CharDevice:
				mode |= unix.S_IFCHR
			case devices.FifoDevice:
				mode |= unix.S_IFIFO
			default:
				return 0, "", nil, fmt.Errorf("%c is not a valid device type for device %s", d.Type, d.Path)
			}
			w.op(opMknod).u32(mode).u32(uint32(d.Major)).u32(uint32(d.Minor)).u32(d.Uid).u32(d.Gid).str(d.Path)
		}
		w.op(opPtmx)
		links := [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}}
		if facts.kcore {
			links = append(links, [2]string{"/proc/kcore", "/dev/core"})
		}
		for _, l := range links {
			w.op(opSymlink).str(l[0]).str(l[1])
		}
	}
	w.op(opPhase).u32(phaseDevices)
	w.op(opPivot)
	if rp := cfg.RootPropagation; rp != 0 && rp&(unix.MS_PRIVATE|unix.MS_SLAVE) == 0 {
		w.op(opRootPropagate).u32(uint32(rp))
	}
	if setupDev {
		w.op(opReopenDevNull)
	}
	if p.Cwd != "" {
		w.op(opMkdirCwd).str(p.Cwd)
	}
	w.op(opPhase).u32(phasePivot)

	for _, m := range cfg.Mounts {
		if m.Flags&unix.MS_RDONLY != 0 && (m.Device == "tmpfs" || filepath.Clean(m.Destination) == "/dev") {
			w.op(opRemountRO).u32(uint32(m.Flags)).str(m.Destination)
		}
	}
	if cfg.Readonlyfs {
		w.op(opRootRO)
	}
	umask := uint32(0o022)
	if cfg.Umask != nil {
		umask = *cfg.Umask
	}
	w.op(opUmask).u32(umask)
	if cfg.Hostname != "" {
		w.op(opHostname).str(cfg.Hostname)
	}
	if cfg.Domainname != "" {
		w.op(opDomainname).str(cfg.Domainname)
	}
	keys := make([]string, 0, len(cfg.Sysctl))
	for k := range cfg.Sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.op(opSysctl).str(k).str(cfg.Sysctl[k])
	}
	for _, path := range cfg.ReadonlyPaths {
		w.op(opReadonlyPath).str(path)
	}
	if len(cfg.MaskPaths) > 0 {
		w.op(opMaskPaths).u32(uint32(len(cfg.MaskPaths)))
		for _, path := range cfg.MaskPaths {
			w.str(path)
		}
	}
	w.op(opPhase).u32(phasePaths)

	if p.NoNewPrivileges {
		w.op(opNNP)
	}
	for _, r := range p.Rlimits {
		kind, ok := rlimits[r.Type]
		if !ok {
			return 0, "", nil, fmt.Errorf("unknown rlimit %q", r.Type)
		}
		w.op(opRlimit).u32(uint32(kind)).u64(r.Soft).u64(r.Hard)
	}
	if in.seccomp != nil && !p.NoNewPrivileges {
		writeSeccomp(w, in.seccomp)
	}

	// libcontainer's finalizeNamespace.
	env, needHome, err := prepareEnv(p.Env)
	if err != nil {
		return 0, "", nil, err
	}
	if p.Cwd != "" {
		w.op(opChdirTry).str(p.Cwd)
	}
	if needHome {
		w.op(opHomeEnv).u32(p.User.UID)
	}
	c := cfg.Capabilities
	if c != nil {
		w.op(opCapBset).u64(capMask(facts.caps, c.Bounding)).u32(facts.lastCap)
	}
	w.op(opKeepCaps).u32(1)
	w.op(opFixStdio).u32(p.User.UID)
	w.op(opSetgroups).u32(uint32(len(p.User.AdditionalGids)))
	for _, g := range p.User.AdditionalGids {
		w.u32(g)
	}
	w.op(opSetgid).u32(p.User.GID)
	w.op(opSetuid).u32(p.User.UID)
	if p.Cwd != "" {
		w.op(opChdirLate).str(p.Cwd)
	}
	w.op(opVerifyCwd)
	w.op(opKeepCaps).u32(0)
	if c != nil {
		w.op(opCapset).u64(capMask(facts.caps, c.Effective)).u64(capMask(facts.caps, c.Permitted)).u64(capMask(facts.caps, c.Inheritable))
		w.op(opAmbient).u64(capMask(facts.caps, c.Ambient))
	}
	w.op(opPhase).u32(phaseCreds)
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	w.op(opLookPath).str(p.Args[0]).str(path)
	if in.seccomp != nil && p.NoNewPrivileges {
		writeSeccomp(w, in.seccomp)
	}
	w.op(opPhase).u32(phaseSeccomp)
	w.op(opReady)
	w.op(opExec).u32(uint32(len(p.Args)))
	for _, a := range p.Args {
		w.str(a)
	}
	w.u32(uint32(len(env)))
	for _, kv := range env {
		w.str(kv)
	}
	if w.err != nil {
		return 0, "", nil, w.err
	}
	return cloneFlags, pidNS, w.bytes(), nil
}

func writeMount(w *planWriter, kind uint32, flags, cleared int, props []int, src, dst, fstype, data string) {
	w.op(opMount).u32(kind).u32(uint32(flags)).u32(uint32(cleared)).u32(uint32(len(props)))
	for _, p := range props {
		w.u32(uint32(p))
	}
	w.str(src).str(dst).str(fstype).str(data)
}

func writeSeccomp(w *planWriter, f *seccompFilter) {
	w.op(opSeccomp).u32(f.flags).u32(uint32(len(f.prog)))
	for _, ins := range f.prog {
		w.b = append(w.b, byte(ins.Code), byte(ins.Code>>8), ins.Jt, ins.Jf)
		w.u32(ins.K)
	}
}

// capMask is the bit set of the named capabilities this kernel supports;
// like libcontainer, it ignores the others.
func capMask(known map[string]uint32, names []string) uint64 {
	var m uint64
	for _, n := range names {
		if c, ok := known[n]; ok && c < 64 {
			m |= 1 << c
		}
	}
	return m
}

// prepareEnv checks and de-duplicates env as libcontainer does (the last
// value of a name wins, an empty HOME is dropped) and tells whether HOME must
// be found in the container's /etc/passwd.
func prepareEnv(env []string) ([]string, bool, error) {
	homeSet := false
	out := make([]string, 0, len(env))
	seen := make(map[string]bool, len(env))
	for i := len(env) - 1; i >= 0; i-- {
		kv := env[i]
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, false, errors.New("invalid environment variable: missing '='")
		}
		if k == "" {
			return nil, false, errors.New("invalid environment variable: name cannot be empty")
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		if strings.IndexByte(kv, 0) >= 0 {
			return nil, false, fmt.Errorf("invalid environment variable %q: contains nul byte (\\x00)", k)
		}
		if k == "HOME" {
			if v == "" {
				continue
			}
			homeSet = true
		}
		out = append(out, kv)
	}
	slices.Reverse(out)
	return out, !homeSet, nil
}

// cgroupHost is the node's cgroup v1 hierarchies and this process's cgroup
// in each, found once: neither changes while a shim runs.
var cgroupHost = sync.OnceValues(func() (h struct {
	mounts []cgroups.Mount
	own    map[string]string
}, err error) {
	if h.mounts, err = cgroups.GetCgroupMounts(false); err != nil {
		return h, err
	}
	h.own, err = cgroups.ParseCgroupFile("/proc/self/cgroup")
	return h, err
})

// cgroupBindsFor lists the cgroup v1 hierarchies libcontainer bind-mounts
// into a container whose cgroups are paths (subsystem → dir), each at the
// container's own cgroup in it.
func cgroupBindsFor(dest string, paths map[string]string) ([]cgroupBind, error) {
	h, err := cgroupHost()
	if err != nil {
		return nil, err
	}
	mounts, own := h.mounts, h.own
	var out []cgroupBind
	for _, mm := range mounts {
		// The init's own cgroup in this hierarchy: the container's where it
		// was placed, the shim's (which the fork server shares) elsewhere.
		dir, err := mm.GetOwnCgroup(own)
		if err != nil {
			return nil, err
		}
		abs := filepath.Join(mm.Mountpoint, mustRel(mm.Root, dir))
		for _, ss := range mm.Subsystems {
			key := strings.TrimPrefix(ss, "name=")
			if p, ok := paths[ss]; ok {
				abs = p
				break
			} else if p, ok := paths["name="+key]; ok {
				abs = p
				break
			}
		}
		out = append(out, cgroupBind{source: abs, dest: filepath.Join(dest, filepath.Base(mm.Mountpoint))})
	}
	return out, nil
}

func mustRel(base, target string) string {
	r, err := filepath.Rel(base, target)
	if err != nil {
		return target
	}
	return r
}
