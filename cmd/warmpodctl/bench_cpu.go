package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cpuSample is CPU time used so far: by a warmpod pod's shim and every
// process it started (tree), by the processes in the pod's cgroup (pod), and
// by the whole node (machine).
type cpuSample struct {
	tree, pod, machine time.Duration
}

func (a cpuSample) sub(b cpuSample) cpuSample {
	return cpuSample{tree: a.tree - b.tree, pod: a.pod - b.pod, machine: a.machine - b.machine}
}

// userHZ is the unit of the times in /proc/PID/stat on every Linux.
const userHZ = 100

// podProcs locates a pod's processes: its shim and its cgroup.
type podProcs struct {
	shimPid    int
	cgroupPath string
}

// procs finds the pod's shim and cgroup through the verbose PodSandboxStatus;
// ok is false when the runtime does not report them or runs elsewhere.
func (p *benchPod) procs(ctx context.Context) (podProcs, bool) {
	if p.t.wp == nil || p.id == "" {
		return podProcs{}, false
	}
	st, err := p.t.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
	if err != nil {
		return podProcs{}, false
	}
	var info struct {
		Pid        int    `json:"pid"`
		CgroupPath string `json:"cgroupPath"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		return podProcs{}, false
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", info.Pid)); err != nil {
		return podProcs{}, false
	}
	return podProcs{shimPid: info.Pid, cgroupPath: info.CgroupPath}, true
}

// cpu samples the CPU time of the pod; nil when it cannot be read here.
func (p *benchPod) cpu(ctx context.Context) *cpuSample {
	pp, ok := p.procs(ctx)
	if !ok {
		return nil
	}
	s := &cpuSample{tree: treeCPU(pp.shimPid), pod: cgroupCPU(pp.cgroupPath), machine: machineCPU()}
	return s
}

// procCPU returns a process's own CPU time and that of its reaped children.
func procCPU(pid int) (own, reaped time.Duration) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// utime, stime, cutime, cstime are fields 14-17; f[0] is field 3.
	if len(f) < 15 {
		return 0, 0
	}
	tick := func(v string) time.Duration {
		n, _ := strconv.ParseInt(v, 10, 64)
		return time.Duration(n) * time.Second / userHZ
	}
	return tick(f[11]) + tick(f[12]), tick(f[13]) + tick(f[14])
}

// treeCPU is the CPU time of shim pid and every process it started: its
// own, its live children's (and theirs), and that of the children it reaped
// (container processes are its children).
func treeCPU(pid int) time.Duration {
	own, reaped := procCPU(pid)
	total := own + reaped
	for _, c := range children(pid) {
		total += treeCPU(c)
	}
	return total
}

// cgroupCPU reads the CPU usage of a cgroup (cgroupfs path), cgroup v1 or v2.
func cgroupCPU(path string) time.Duration {
	if path == "" {
		return 0
	}
	for _, h := range []string{"cpuacct", "cpu,cpuacct"} {
		if data, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", h, path, "cpuacct.usage")); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
			return time.Duration(n)
		}
	}
	data, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", path, "cpu.stat"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(n) * time.Microsecond
		}
	}
	return 0
}

// machineCPU is the CPU time the node spent on anything but idling.
func machineCPU() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	var total time.Duration
	// cpu user nice system idle iowait irq softirq steal: all but idle and iowait.
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		total += time.Duration(n) * time.Second / userHZ
	}
	return total
}
