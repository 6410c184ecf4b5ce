package oci

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func nsString(list []specs.LinuxNamespace) string {
	var parts []string
	for _, n := range list {
		p := n.Path
		if p == "" {
			p = "new"
		}
		parts = append(parts, fmt.Sprintf("%s=%s", n.Type, p))
	}
	return strings.Join(parts, " ")
}

func TestNamespaces(t *testing.T) {
	pod := testPod()
	pod.TargetPIDNS = "/proc/4242/ns/pid"
	pod.UserNS = ""
	tests := []struct {
		name         string
		opts         NamespaceOptions
		privileged   bool
		cgroupV2     bool
		adjustPod    func(p *Pod)
		want         string
		wantHostname string
		wantUIDMaps  []specs.LinuxIDMapping
		wantErr      string
	}{
		{
			name: "pod network and ipc, container pid",
			opts: NamespaceOptions{PID: NamespaceContainer},
			want: "pid=new network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new",
		},
		{
			name: "pod pid",
			opts: NamespaceOptions{PID: NamespacePod},
			want: "pid=" + pod.PIDNS + " network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new",
		},
		{
			name: "host network, ipc and pid: host uts too",
			opts: NamespaceOptions{PID: NamespaceNode, Network: NamespaceNode, IPC: NamespaceNode},
			want: "mount=new",
		},
		{
			name: "target pid",
			opts: NamespaceOptions{PID: NamespaceTarget, TargetID: "other"},
			want: "pid=/proc/4242/ns/pid network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new",
		},
		{
			name: "cgroup namespace on cgroup v2", cgroupV2: true,
			opts: NamespaceOptions{PID: NamespaceContainer},
			want: "pid=new network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new cgroup=new",
		},
		{
			name: "no cgroup namespace for privileged", cgroupV2: true, privileged: true,
			opts: NamespaceOptions{PID: NamespaceContainer},
			want: "pid=new network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new",
		},
		{
			name: "own uts namespace carries the hostname", adjustPod: func(p *Pod) { p.UTSNS = "" },
			opts: NamespaceOptions{PID: NamespaceContainer},
			want: "pid=new network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=new mount=new", wantHostname: "web-0",
		},
		{
			name: "container network",
			opts: NamespaceOptions{PID: NamespaceContainer, Network: NamespaceContainer},
			want: "pid=new network=new ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new",
		},
		{
			name: "user namespace with mappings",
			opts: NamespaceOptions{PID: NamespaceContainer, UserNS: &UserNamespace{
				Mode: NamespacePod,
				UIDs: []IDMapping{{HostID: 65536, ContainerID: 0, Length: 65536}},
				GIDs: []IDMapping{{HostID: 65536, ContainerID: 0, Length: 65536}},
			}},
			want:        "pid=new network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new user=new",
			wantUIDMaps: []specs.LinuxIDMapping{{HostID: 65536, ContainerID: 0, Size: 65536}},
		},
		{
			name:      "pod user namespace joined without mappings",
			adjustPod: func(p *Pod) { p.UserNS = "/run/warmpod/pods/sandbox-1/ns/user" },
			opts: NamespaceOptions{PID: NamespaceContainer, UserNS: &UserNamespace{
				Mode: NamespacePod,
				UIDs: []IDMapping{{HostID: 65536, ContainerID: 0, Length: 65536}},
				GIDs: []IDMapping{{HostID: 65536, ContainerID: 0, Length: 65536}},
			}},
			want: "pid=new network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new user=/run/warmpod/pods/sandbox-1/ns/user",
		},
		{
			name: "node user namespace is the host's",
			opts: NamespaceOptions{PID: NamespaceContainer, UserNS: &UserNamespace{Mode: NamespaceNode}},
			want: "pid=new network=" + pod.NetNS + " ipc=" + pod.IPCNS + " uts=" + pod.UTSNS + " mount=new",
		},
		{
			name:    "user namespace without mappings",
			opts:    NamespaceOptions{UserNS: &UserNamespace{Mode: NamespacePod}},
			wantErr: "uid or gid mappings are missing",
		},
		{
			name:    "container user namespace",
			opts:    NamespaceOptions{UserNS: &UserNamespace{Mode: NamespaceContainer}},
			wantErr: "only POD and NODE",
		},
		{
			name:      "pod network without a pinned namespace",
			adjustPod: func(p *Pod) { p.NetNS = "" },
			opts:      NamespaceOptions{PID: NamespaceContainer},
			wantErr:   "network namespace mode is POD but the pod has no network namespace",
		},
		{
			name:      "pod pid without a pinned namespace",
			adjustPod: func(p *Pod) { p.PIDNS = "" },
			opts:      NamespaceOptions{PID: NamespacePod},
			wantErr:   "pid namespace mode is POD",
		},
		{
			name:      "target pid unresolved",
			adjustPod: func(p *Pod) { p.TargetPIDNS = "" },
			opts:      NamespaceOptions{PID: NamespaceTarget, TargetID: "c2"},
			wantErr:   `pid namespace mode is TARGET (target "c2")`,
		},
		{
			name:    "target network",
			opts:    NamespaceOptions{Network: NamespaceTarget},
			wantErr: "network namespace mode 3 is not supported",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := *pod
			if tt.adjustPod != nil {
				tt.adjustPod(&p)
			}
			c := &Container{Security: Security{Privileged: tt.privileged, Namespaces: tt.opts}}
			got, err := buildNamespaces(c, &p, tt.cgroupV2)
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := nsString(got.namespaces); s != tt.want {
				t.Errorf("namespaces:\n got %s\nwant %s", s, tt.want)
			}
			if got.hostname != tt.wantHostname {
				t.Errorf("hostname = %q, want %q", got.hostname, tt.wantHostname)
			}
			if !slices.Equal(got.uidMappings, tt.wantUIDMaps) {
				t.Errorf("uid mappings = %v, want %v", got.uidMappings, tt.wantUIDMaps)
			}
		})
	}
}

// Host network with a user namespace cannot mount a sysfs: the build binds the host's /sys instead.
func TestUserNamespaceOnHostNetworkBindsSys(t *testing.T) {
	s := mustBuild(t, func(c *Container, _ *Pod, _ *fakeSystem, _ *Host) {
		c.Security.Namespaces = NamespaceOptions{PID: NamespaceContainer, Network: NamespaceNode, UserNS: &UserNamespace{
			Mode: NamespacePod,
			UIDs: []IDMapping{{HostID: 65536, Length: 65536}},
			GIDs: []IDMapping{{HostID: 65536, Length: 65536}},
		}}
	})
	m, ok := findMount(s, "/sys")
	if !ok || m.Type != "bind" || m.Source != "/sys" || !slices.Contains(m.Options, "rro") {
		t.Fatalf("/sys = %+v, want a recursive read-only bind of the host's", m)
	}
	if len(s.Linux.UIDMappings) != 1 || s.Hostname != "" {
		t.Fatalf("uid mappings %v, hostname %q", s.Linux.UIDMappings, s.Hostname)
	}
}
