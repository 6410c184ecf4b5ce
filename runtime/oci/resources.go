package oci

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// applyResources copies CRI resources into the spec's cgroup settings, validating what the kernel or
// libcontainer would otherwise reject later, at start, with a less helpful message.
func applyResources(res *specs.LinuxResources, r *Resources, h *Host) error {
	if r == nil {
		return nil
	}
	var cpu specs.LinuxCPU
	switch {
	case r.CPUPeriod < 0:
		return invalidf("cpu period %d is negative", r.CPUPeriod)
	case r.CPUPeriod > 0:
		p := uint64(r.CPUPeriod)
		cpu.Period = &p
	}
	switch {
	case r.CPUQuota < -1:
		return invalidf("cpu quota %d is negative (only -1, unlimited, is allowed)", r.CPUQuota)
	case r.CPUQuota != 0:
		q := r.CPUQuota
		cpu.Quota = &q
	}
	switch {
	case r.CPUShares < 0:
		return invalidf("cpu shares %d is negative", r.CPUShares)
	case r.CPUShares > 0:
		s := uint64(r.CPUShares)
		cpu.Shares = &s
	}
	for _, set := range []struct{ field, value string }{{"cpuset cpus", r.CpusetCpus}, {"cpuset mems", r.CpusetMems}} {
		if !ValidCPUSet(set.value) {
			return invalidf("%s %q is not a list of numbers and ranges such as \"0-3,6\"", set.field, set.value)
		}
	}
	cpu.Cpus, cpu.Mems = r.CpusetCpus, r.CpusetMems
	if cpu != (specs.LinuxCPU{}) {
		res.CPU = &cpu
	}

	var mem specs.LinuxMemory
	switch {
	case r.MemoryLimitInBytes < 0:
		return invalidf("memory limit %d is negative", r.MemoryLimitInBytes)
	case r.MemoryLimitInBytes > 0:
		l := r.MemoryLimitInBytes
		mem.Limit = &l
	}
	swap := r.MemorySwapLimitInBytes
	switch {
	case swap < -1:
		return invalidf("memory swap limit %d is negative (only -1, unlimited, is allowed)", swap)
	case swap > 0 && mem.Limit == nil:
		return invalidf("memory swap limit %d is set without a memory limit", swap)
	case swap > 0 && swap < *mem.Limit:
		return invalidf("memory swap limit %d is below the memory limit %d (it counts memory plus swap)", swap, *mem.Limit)
	case swap == 0 && mem.Limit != nil:
		// Like containerd: a memory limit without a swap limit means no swap, where swap is accounted.
		swap = *mem.Limit
	}
	if swap != 0 && h.SwapAccounting {
		mem.Swap = &swap
	}
	if mem != (specs.LinuxMemory{}) {
		res.Memory = &mem
	}

	switch {
	case r.PidsLimit < 0:
		return invalidf("pids limit %d is negative", r.PidsLimit)
	case r.PidsLimit > 0:
		n := r.PidsLimit
		res.Pids = &specs.LinuxPids{Limit: &n}
	}

	if h.HugePageSizes != nil {
		for _, size := range slices.Sorted(maps.Keys(r.HugepageLimits)) {
			if !slices.Contains(h.HugePageSizes, size) {
				return invalidf("hugepage size %q is not one of this host's (%s)", size, strings.Join(h.HugePageSizes, ", "))
			}
			res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: size, Limit: r.HugepageLimits[size]})
		}
	}

	if len(r.Unified) > 0 {
		if !h.CgroupV2 {
			return invalidf("unified cgroup resources need cgroup v2; this host runs cgroup v1")
		}
		for k := range r.Unified {
			if !strings.Contains(k, ".") || strings.Contains(k, "/") {
				return invalidf("unified resource %q is not a cgroup v2 file name", k)
			}
		}
		res.Unified = maps.Clone(r.Unified)
	}
	return nil
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

// oomScoreAdj validates the requested value and clamps it into the pod's permitted range.
func oomScoreAdj(r *Resources, pod *Pod) (*int, error) {
	if r == nil {
		return nil, nil
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
