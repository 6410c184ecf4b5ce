package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// ThisHost returns the facts of this host, read on first use.
func ThisHost() (Host, error) { return thisHost() }

var thisHost = sync.OnceValues(DetectHost)

// DetectHost reads the host facts.
func DetectHost() (Host, error) {
	var h Host
	h.CgroupV2 = cgroups.IsCgroup2UnifiedMode()

	caps, err := heldCapabilities()
	if err != nil {
		return Host{}, fmt.Errorf("read own capabilities: %w", err)
	}
	h.Capabilities = caps

	h.SwapAccounting = swapAccounting(h.CgroupV2)
	if hugetlbController(h.CgroupV2) {
		h.HugePageSizes = cgroups.HugePageSizes()
	}

	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return Host{}, fmt.Errorf("uname: %w", err)
	}
	h.RecursiveReadOnly = kernelAtLeast(unix.ByteSliceToString(uts.Release[:]), 5, 12)

	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil {
		h.AppArmor = strings.HasPrefix(string(b), "Y")
	}
	return h, nil
}

// heldCapabilities lists the capabilities in both our permitted and bounding sets: only those can be
// passed on to a container's init.
func heldCapabilities() ([]string, error) {
	known, err := capability.ListSupported()
	if err != nil {
		return nil, err
	}
	self, err := capability.NewPid2(0)
	if err != nil {
		return nil, err
	}
	if err := self.Load(); err != nil {
		return nil, err
	}
	var out []string
	for _, c := range known {
		if self.Get(capability.PERMITTED, c) && self.Get(capability.BOUNDING, c) {
			out = append(out, capName(c))
		}
	}
	return out, nil
}

// swapAccounting checks for the file that a swap limit is written to: memory.memsw.* on v1 (absent when
// the kernel boots without swapaccount), memory.swap.max on v2 (absent at the root, so look at our own
// cgroup).
func swapAccounting(v2 bool) bool {
	p := "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
	if v2 {
		own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
		if err != nil {
			return false
		}
		p = filepath.Join("/sys/fs/cgroup", own[""], "memory.swap.max")
	}
	_, err := os.Stat(p)
	return err == nil
}

func hugetlbController(v2 bool) bool {
	if !v2 {
		_, err := os.Stat("/sys/fs/cgroup/hugetlb")
		return err == nil
	}
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	return err == nil && strings.Contains(" "+strings.TrimSpace(string(b))+" ", " hugetlb ")
}

// kernelAtLeast compares a uname release ("6.1.0-18-amd64", "5.12-rc1") with major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	maStr, rest, _ := strings.Cut(release, ".")
	ma, err := strconv.Atoi(maStr)
	if err != nil {
		return false
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	mi, err := strconv.Atoi(rest[:end])
	if err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// HostOOMScoreAdjRange returns the oom_score_adj range containers may be given. Lowering a process's
// oom_score_adj below the value a privileged process last set needs CAP_SYS_RESOURCE; without it our own
// current value is the lowest that is safe to ask for (libcontainer would fail the start with EACCES).
// Should /proc/self/oom_score_adj be unreadable, it answers [0, 1000], the value a process starts with.
func HostOOMScoreAdjRange() (lo, hi int) {
	const lowest, highest = -1000, 1000
	if caps, err := heldCapabilities(); err == nil && slices.Contains(caps, "CAP_SYS_RESOURCE") {
		return lowest, highest
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, highest
	}
	own, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || own < lowest || own > highest {
		return 0, highest
	}
	return own, highest
}
