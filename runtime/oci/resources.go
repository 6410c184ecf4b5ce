package oci

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// LinuxResources translates CRI container resources into the OCI spec's cgroup settings for host h. It is
// the one translation of CRI limits: container create, container update and pod update all go through it.
// A nil r gives empty settings. Errors match ErrInvalidArgument and name the CRI field; they check what the
// kernel or libcontainer would otherwise reject later, at start, with a less helpful message.
//
// Swap follows containerd's CRI plugin and CRI-O, which is what the kubelet expects of both:
//
//   - memory_swap_limit_in_bytes counts memory plus swap, as cgroup v1's memory.memsw.limit_in_bytes and the
//     OCI spec's memory.swap do; on cgroup v2 libcontainer writes memory.swap.max = swap - limit.
//   - 0 (unset) with a memory limit means no swap: swap is set to the memory limit. The kubelet relies on
//     this when it leaves the field unset, and sends exactly that itself for NoSwap on cgroup v1. On cgroup
//     v2 the kubelet states swap as unified memory.swap.max ("0", or the LimitedSwap amount); unified files
//     are written after the translated ones and win.
//   - -1 means unlimited swap.
//   - Any other value must come with a memory limit and be at least that limit; below -1 is an error.
//   - On a host that does not account swap every swap value is dropped, as the limit cannot be set there.
func LinuxResources(r *Resources, h *Host) (*specs.LinuxResources, error) {
	res := &specs.LinuxResources{}
	if r == nil {
		return res, nil
	}
	var cpu specs.LinuxCPU
	switch {
	case r.CPUPeriod < 0:
		return nil, invalidf("cpu_period %d is negative", r.CPUPeriod)
	case r.CPUPeriod > 0:
		p := uint64(r.CPUPeriod)
		cpu.Period = &p
	}
	switch {
	case r.CPUQuota < -1:
		return nil, invalidf("cpu_quota %d is negative (only -1, unlimited, is allowed)", r.CPUQuota)
	case r.CPUQuota != 0:
		q := r.CPUQuota
		cpu.Quota = &q
	}
	switch {
	case r.CPUShares < 0:
		return nil, invalidf("cpu_shares %d is negative", r.CPUShares)
	case r.CPUShares > 0:
		s := uint64(r.CPUShares)
		cpu.Shares = &s
	}
	for _, set := range []struct{ field, value string }{{"cpuset_cpus", r.CpusetCpus}, {"cpuset_mems", r.CpusetMems}} {
		if !ValidCPUSet(set.value) {
			return nil, invalidf("%s %q is not a list of numbers and ranges such as \"0-3,6\"", set.field, set.value)
		}
	}
	cpu.Cpus, cpu.Mems = r.CpusetCpus, r.CpusetMems
	if cpu != (specs.LinuxCPU{}) {
		res.CPU = &cpu
	}

	mem, err := memory(r, h)
	if err != nil {
		return nil, err
	}
	if mem != (specs.LinuxMemory{}) {
		res.Memory = &mem
	}

	switch {
	case r.PidsLimit < 0:
		return nil, invalidf("pids limit %d is negative", r.PidsLimit)
	case r.PidsLimit > 0:
		n := r.PidsLimit
		res.Pids = &specs.LinuxPids{Limit: &n}
	}

	if _, ok := r.HugepageLimits[""]; ok {
		return nil, invalidf("hugepage_limits: page_size is required")
	}
	if h.HugePageSizes != nil {
		for _, size := range slices.Sorted(maps.Keys(r.HugepageLimits)) {
			if !slices.Contains(h.HugePageSizes, size) {
				return nil, invalidf("hugepage_limits: page size %q is not one of this host's (%s)", size, strings.Join(h.HugePageSizes, ", "))
			}
			res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: size, Limit: r.HugepageLimits[size]})
		}
	}

	if len(r.Unified) > 0 {
		if !h.CgroupV2 {
			return nil, invalidf("unified cgroup resources need cgroup v2; this host runs cgroup v1")
		}
		for k := range r.Unified {
			// "<controller>.<file>", as memory.high: a key must name a file of the container's own cgroup.
			ctrl, file, ok := strings.Cut(k, ".")
			if !ok || ctrl == "" || file == "" || strings.Contains(k, "/") {
				return nil, invalidf("unified: %q is not a cgroup v2 file name", k)
			}
		}
		res.Unified = maps.Clone(r.Unified)
	}
	return res, nil
}

// memory translates the memory limit and applies the swap rule of LinuxResources.
func memory(r *Resources, h *Host) (specs.LinuxMemory, error) {
	var mem specs.LinuxMemory
	switch {
	case r.MemoryLimitInBytes < 0:
		return mem, invalidf("memory_limit_in_bytes %d is negative", r.MemoryLimitInBytes)
	case r.MemoryLimitInBytes > 0:
		l := r.MemoryLimitInBytes
		mem.Limit = &l
	}
	swap := r.MemorySwapLimitInBytes
	switch {
	case swap < -1:
		return mem, invalidf("memory_swap_limit_in_bytes %d is negative (only -1, unlimited, is allowed)", swap)
	case swap > 0 && mem.Limit == nil:
		return mem, invalidf("memory_swap_limit_in_bytes %d is set without memory_limit_in_bytes", swap)
	case swap > 0 && swap < *mem.Limit:
		return mem, invalidf("memory_swap_limit_in_bytes %d is below memory_limit_in_bytes %d (it counts memory plus swap)", swap, *mem.Limit)
	case swap == 0 && mem.Limit != nil:
		swap = *mem.Limit
	}
	if swap != 0 && h.SwapAccounting {
		mem.Swap = &swap
	}
	return mem, nil
}

// ValidCPUSet reports whether s is in the kernel's cpu list format: "", or
// comma-separated numbers and "a-b" ranges.
func ValidCPUSet(s string) bool {
	if s == "" {
		return true
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return false
		}
		if isRange {
			b, err := strconv.ParseUint(hi, 10, 32)
			if err != nil || b < a {
				return false
			}
		}
	}
	return true
}

// oomScoreAdj validates the requested value and clamps it into the pod's permitted range. Without
// resources it is 0, set explicitly: a container must not inherit the score of the shim that starts it,
// which the daemon keeps close to its own so that the OOM killer spares the pods' shims.
func oomScoreAdj(r *Resources, pod *Pod) (*int, error) {
	if r == nil {
		r = &Resources{}
	}
	const lowest, highest = -1000, 1000
	if r.OOMScoreAdj < lowest || r.OOMScoreAdj > highest {
		return nil, invalidf("oom score adj %d is out of range [%d, %d]", r.OOMScoreAdj, lowest, highest)
	}
	lo, hi := pod.OOMScoreAdjMin, pod.OOMScoreAdjMax
	if lo == 0 && hi == 0 {
		lo, hi = lowest, highest
	}
	if lo > hi || lo < lowest || hi > highest {
		return nil, invalidf("pod oom score adj range [%d, %d] is not within [%d, %d]", lo, hi, lowest, highest)
	}
	v := min(max(int(r.OOMScoreAdj), lo), hi)
	return &v, nil
}

// namespacedSysctls are the non-net sysctls the kernel scopes to an IPC namespace (the list libcontainer
// accepts), so a container may set them without touching the host.
var namespacedSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// buildSysctls merges the pod's and the container's sysctls and accepts only those the container's own
// namespaces scope: IPC ones need a non-host IPC namespace, net.* a non-host network namespace.
func buildSysctls(pod, ctr map[string]string, ns nsPlan) (map[string]string, error) {
	if len(pod) == 0 && len(ctr) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(pod)+len(ctr))
	maps.Copy(out, pod)
	maps.Copy(out, ctr)
	for k, v := range out {
		name := sysctlDots(k)
		switch {
		case v == "":
			return nil, invalidf("sysctl %q has an empty value", k)
		case namespacedSysctls[name] || strings.HasPrefix(name, "fs.mqueue."):
			if ns.hostIPC {
				return nil, invalidf("sysctl %q would change the host: the pod uses the host IPC namespace", k)
			}
		case strings.HasPrefix(name, "net."):
			if ns.hostNet {
				return nil, invalidf("sysctl %q would change the host: the pod uses the host network namespace", k)
			}
		default:
			return nil, invalidf("sysctl %q is not namespaced; only net.*, fs.mqueue.* and %s are allowed",
				k, strings.Join(slices.Sorted(maps.Keys(namespacedSysctls)), ", "))
		}
	}
	return out, nil
}

// sysctlDots converts the slash form sysctl(8) also accepts ("net/ipv4/ip_forward", where a dot inside a
// component such as an interface name "eth0.100" stays a dot) to the dotted form.
func sysctlDots(k string) string {
	i := strings.IndexAny(k, "./")
	if i < 0 || k[i] == '.' {
		return k
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, k)
}
