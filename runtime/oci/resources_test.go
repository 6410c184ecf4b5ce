package oci

import (
	"encoding/json"
	"testing"
)

func TestLinuxResources(t *testing.T) {
	v1 := testHost()
	v2 := testHost()
	v2.CgroupV2 = true
	noHugetlb := testHost()
	noHugetlb.HugePageSizes = nil

	tests := []struct {
		name    string
		r       *Resources
		host    Host
		want    string // JSON of the resulting LinuxResources
		wantErr string
	}{
		{name: "nil", host: v1, want: `{}`},
		{name: "zero means unset", r: &Resources{}, host: v1, want: `{}`},
		{
			name: "cpu", host: v1,
			r:    &Resources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, CpusetCpus: "0-1,3", CpusetMems: "0"},
			want: `{"cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0-1,3","mems":"0"}}`,
		},
		{name: "unlimited quota", host: v1, r: &Resources{CPUQuota: -1}, want: `{"cpu":{"quota":-1}}`},
		{name: "oom score adj is not a cgroup limit", host: v1, r: &Resources{OOMScoreAdj: 500}, want: `{}`},
		{name: "pids", host: v1, r: &Resources{PidsLimit: 1024}, want: `{"pids":{"limit":1024}}`},
		{
			name: "hugepages sorted by size name", host: v1, r: &Resources{HugepageLimits: map[string]uint64{"2MB": 0, "1GB": 1 << 30}},
			want: `{"hugepageLimits":[{"pageSize":"1GB","limit":1073741824},{"pageSize":"2MB","limit":0}]}`,
		},
		{
			name: "hugepages dropped without the controller", host: noHugetlb, r: &Resources{HugepageLimits: map[string]uint64{"2MB": 0}},
			want: `{}`,
		},
		{
			name: "unified on v2", host: v2, r: &Resources{Unified: map[string]string{"memory.high": "1000000"}},
			want: `{"unified":{"memory.high":"1000000"}}`,
		},
		{name: "unified on v1", host: v1, r: &Resources{Unified: map[string]string{"memory.high": "1"}}, wantErr: "need cgroup v2"},
		{name: "unified path key", host: v2, r: &Resources{Unified: map[string]string{"../memory.high": "1"}}, wantErr: `unified: "../memory.high" is not a cgroup v2 file name`},
		{name: "unified parent key", host: v2, r: &Resources{Unified: map[string]string{"..": "1"}}, wantErr: `unified: ".." is not a cgroup v2 file name`},
		{name: "unified key without a controller", host: v2, r: &Resources{Unified: map[string]string{".high": "1"}}, wantErr: "not a cgroup v2 file name"},
		{name: "unknown page size", host: v1, r: &Resources{HugepageLimits: map[string]uint64{"4MB": 1}}, wantErr: `page size "4MB" is not one of this host's (2MB, 1GB)`},
		{name: "empty page size", host: noHugetlb, r: &Resources{HugepageLimits: map[string]uint64{"": 1}}, wantErr: "hugepage_limits: page_size is required"},
		{name: "negative period", host: v1, r: &Resources{CPUPeriod: -1}, wantErr: "cpu_period -1"},
		{name: "negative quota", host: v1, r: &Resources{CPUQuota: -5}, wantErr: "cpu_quota -5"},
		{name: "negative shares", host: v1, r: &Resources{CPUShares: -2}, wantErr: "cpu_shares -2"},
		{name: "negative memory", host: v1, r: &Resources{MemoryLimitInBytes: -1}, wantErr: "memory_limit_in_bytes -1"},
		{name: "negative pids", host: v1, r: &Resources{PidsLimit: -3}, wantErr: "pids limit -3"},
		{name: "bad cpuset", host: v1, r: &Resources{CpusetCpus: "0-a"}, wantErr: `cpuset_cpus "0-a"`},
		{name: "reversed cpuset range", host: v1, r: &Resources{CpusetMems: "3-1"}, wantErr: `cpuset_mems "3-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := LinuxResources(tt.r, &tt.host)
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(res)
			if string(b) != tt.want {
				t.Fatalf("resources = %s\n            want %s", b, tt.want)
			}
		})
	}
}

// TestLinuxResourcesSwap checks the swap rule of LinuxResources, on hosts that account swap (cgroup v1 and
// v2 alike: the OCI value is memory+swap on both) and on one that does not.
func TestLinuxResourcesSwap(t *testing.T) {
	const gib = 1 << 30
	accounted := testHost()
	v2 := testHost()
	v2.CgroupV2 = true
	unaccounted := testHost()
	unaccounted.SwapAccounting = false

	tests := []struct {
		name        string
		limit, swap int64
		// want is the OCI memory on hosts that account swap, wantNoSwap on one that does not.
		want, wantNoSwap string
		wantErr          string
	}{
		{name: "unset with a limit means no swap", limit: gib, want: `{"limit":1073741824,"swap":1073741824}`, wantNoSwap: `{"limit":1073741824}`},
		{name: "equal to the limit means no swap", limit: gib, swap: gib, want: `{"limit":1073741824,"swap":1073741824}`, wantNoSwap: `{"limit":1073741824}`},
		{name: "above the limit allows the difference", limit: gib, swap: 2 * gib, want: `{"limit":1073741824,"swap":2147483648}`, wantNoSwap: `{"limit":1073741824}`},
		{name: "-1 is unlimited", limit: gib, swap: -1, want: `{"limit":1073741824,"swap":-1}`, wantNoSwap: `{"limit":1073741824}`},
		{name: "-1 without a limit", swap: -1, want: `{"swap":-1}`, wantNoSwap: `null`},
		{name: "unset without a limit", want: `null`, wantNoSwap: `null`},
		{name: "below the limit", limit: 2 * gib, swap: gib, wantErr: "memory_swap_limit_in_bytes 1073741824 is below memory_limit_in_bytes 2147483648"},
		{name: "without a limit", swap: gib, wantErr: "memory_swap_limit_in_bytes 1073741824 is set without memory_limit_in_bytes"},
		{name: "below -1", limit: gib, swap: -2, wantErr: "memory_swap_limit_in_bytes -2 is negative"},
	}
	for _, tt := range tests {
		for _, h := range []struct {
			name string
			host Host
			want string
		}{{"v1", accounted, tt.want}, {"v2", v2, tt.want}, {"unaccounted", unaccounted, tt.wantNoSwap}} {
			t.Run(tt.name+"/"+h.name, func(t *testing.T) {
				res, err := LinuxResources(&Resources{MemoryLimitInBytes: tt.limit, MemorySwapLimitInBytes: tt.swap}, &h.host)
				if wantInvalid(t, err, tt.wantErr) {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(res.Memory)
				if string(b) != h.want {
					t.Fatalf("memory = %s, want %s", b, h.want)
				}
			})
		}
	}
}

func TestOOMScoreAdj(t *testing.T) {
	tests := []struct {
		name     string
		adj      int64
		min, max int
		want     int
		wantErr  string
	}{
		{name: "zero range is unrestricted", adj: -997, want: -997},
		{name: "inside", adj: 500, min: -500, max: 1000, want: 500},
		{name: "clamped up to the daemon's own", adj: -997, min: 0, max: 1000, want: 0},
		{name: "clamped down", adj: 1000, min: -1000, max: 900, want: 900},
		{name: "out of range", adj: 1001, wantErr: "oom score adj 1001"},
		{name: "bad pod range", adj: 0, min: 10, max: 5, wantErr: "pod oom score adj range [10, 5]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oomScoreAdj(&Resources{OOMScoreAdj: tt.adj}, &Pod{OOMScoreAdjMin: tt.min, OOMScoreAdjMax: tt.max})
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil || got == nil || *got != tt.want {
				t.Fatalf("adj = %v, %v; want %d", got, err, tt.want)
			}
		})
	}
	// Without resources the score is 0, set, so that no container inherits the shim's.
	if got, err := oomScoreAdj(nil, &Pod{}); got == nil || *got != 0 || err != nil {
		t.Errorf("oomScoreAdj(nil) = %v, %v; want 0", got, err)
	}
}

func TestSysctls(t *testing.T) {
	tests := []struct {
		name             string
		pod, ctr         map[string]string
		hostNet, hostIPC bool
		want             map[string]string
		wantErr          string
	}{
		{name: "none"},
		{
			name: "pod and container merged, container wins",
			pod:  map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1024"},
			ctr:  map[string]string{"kernel.shmmax": "2048", "fs.mqueue.msg_max": "20"},
			want: map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "2048", "fs.mqueue.msg_max": "20"},
		},
		{
			name: "slash form",
			pod:  map[string]string{"net/ipv4/conf/eth0.100/forwarding": "1", "kernel/sem": "250 32000 32 128"},
			want: map[string]string{"net/ipv4/conf/eth0.100/forwarding": "1", "kernel/sem": "250 32000 32 128"},
		},
		{name: "net on host network", pod: map[string]string{"net.core.somaxconn": "1024"}, hostNet: true, wantErr: "host network namespace"},
		{name: "ipc on host ipc", ctr: map[string]string{"kernel.msgmax": "1"}, hostIPC: true, wantErr: "host IPC namespace"},
		{name: "not namespaced", pod: map[string]string{"vm.swappiness": "1"}, wantErr: `sysctl "vm.swappiness" is not namespaced`},
		{name: "kernel.shm lookalike", pod: map[string]string{"kernel.shmfoo": "1"}, wantErr: "not namespaced"},
		{name: "hostname conflicts with the spec", pod: map[string]string{"kernel.hostname": "x"}, wantErr: "not namespaced"},
		{name: "empty value", pod: map[string]string{"net.ipv4.ip_forward": ""}, wantErr: "empty value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildSysctls(tt.pod, tt.ctr, nsPlan{hostNet: tt.hostNet, hostIPC: tt.hostIPC})
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tt.want)
			if string(g) != string(w) {
				t.Fatalf("sysctls = %s, want %s", g, w)
			}
		})
	}
}

// Through Build, host network and host IPC come from the namespace modes.
func TestSysctlsFollowNamespaceModes(t *testing.T) {
	_, err := build(t, func(c *Container, pod *Pod, _ *fakeSystem, _ *Host) {
		c.Security.Namespaces.Network = NamespaceNode
		pod.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
	})
	wantInvalid(t, err, "host network")
	s := mustBuild(t, func(c *Container, pod *Pod, _ *fakeSystem, _ *Host) {
		pod.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		c.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
	})
	if len(s.Linux.Sysctl) != 2 {
		t.Fatalf("sysctls = %v", s.Linux.Sysctl)
	}
}

func TestValidCPUSet(t *testing.T) {
	for in, want := range map[string]bool{
		"": true, "0": true, "0-3": true, "0-3,6,8-9": true, "3-3": true,
		"3-1": false, "a": false, "0,": false, "-1": false, "0-": false,
	} {
		if got := ValidCPUSet(in); got != want {
			t.Errorf("ValidCPUSet(%q) = %v, want %v", in, got, want)
		}
	}
}
