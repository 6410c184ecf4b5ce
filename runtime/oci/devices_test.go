package oci

import (
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDevices(t *testing.T) {
	gpu := hostDevice{Path: "/dev/nvidia0", Type: "c", Major: 195, Minor: 0, Mode: 0o666}
	addGPU := func(sys *fakeSystem) {
		sys.addPath("/dev/nvidia0")
		sys.devices["/dev/nvidia0"] = []hostDevice{gpu}
	}
	deny := specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}
	tests := []struct {
		name      string
		adjust    func(c *Container, pod *Pod, sys *fakeSystem, h *Host)
		wantNodes []string // container paths
		wantRules []specs.LinuxDeviceCgroup
		wantErr   string
	}{
		{
			name:      "no devices: deny all, libcontainer adds the defaults",
			wantRules: []specs.LinuxDeviceCgroup{deny},
		},
		{
			name: "a device with permissions",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				addGPU(sys)
				c.Devices = []Device{{ContainerPath: "/dev/gpu0", HostPath: "/dev/nvidia0", Permissions: "rw"}}
			},
			wantNodes: []string{"/dev/gpu0"},
			wantRules: []specs.LinuxDeviceCgroup{deny, {Allow: true, Type: "c", Major: ptr[int64](195), Minor: ptr[int64](0), Access: "rw"}},
		},
		{
			name: "empty permissions mean rwm",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				addGPU(sys)
				c.Devices = []Device{{ContainerPath: "/dev/nvidia0", HostPath: "/dev/nvidia0"}}
			},
			wantNodes: []string{"/dev/nvidia0"},
			wantRules: []specs.LinuxDeviceCgroup{deny, {Allow: true, Type: "c", Major: ptr[int64](195), Minor: ptr[int64](0), Access: "rwm"}},
		},
		{
			name: "symlinked host device",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				addGPU(sys)
				sys.paths["/dev/gpu-by-name"] = "/dev/nvidia0"
				c.Devices = []Device{{ContainerPath: "/dev/gpu", HostPath: "/dev/gpu-by-name", Permissions: "r"}}
			},
			wantNodes: []string{"/dev/gpu"},
			wantRules: []specs.LinuxDeviceCgroup{deny, {Allow: true, Type: "c", Major: ptr[int64](195), Minor: ptr[int64](0), Access: "r"}},
		},
		{
			name: "a directory of devices",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				sys.addPath("/dev/dri")
				sys.devices["/dev/dri"] = []hostDevice{
					{Path: "/dev/dri/card0", Type: "c", Major: 226, Minor: 0},
					{Path: "/dev/dri/renderD128", Type: "c", Major: 226, Minor: 128},
				}
				c.Devices = []Device{{ContainerPath: "/dev/dri", HostPath: "/dev/dri", Permissions: "rw"}}
			},
			wantNodes: []string{"/dev/dri/card0", "/dev/dri/renderD128"},
			wantRules: []specs.LinuxDeviceCgroup{
				deny,
				{Allow: true, Type: "c", Major: ptr[int64](226), Minor: ptr[int64](0), Access: "rw"},
				{Allow: true, Type: "c", Major: ptr[int64](226), Minor: ptr[int64](128), Access: "rw"},
			},
		},
		{
			name: "privileged: every host device, allow all; a CRI device replaces the host's at its path",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, _ *Host) {
				c.Security.Privileged, pod.Privileged = true, true
				addGPU(sys)
				c.Devices = []Device{{ContainerPath: "/dev/sda", HostPath: "/dev/nvidia0"}}
			},
			wantNodes: []string{"/dev/null", "/dev/fuse", "/dev/sda"},
			wantRules: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
		},
		{
			name: "missing host device",
			adjust: func(c *Container, _ *Pod, _ *fakeSystem, _ *Host) {
				c.Devices = []Device{{ContainerPath: "/dev/x", HostPath: "/dev/missing"}}
			},
			wantErr: `devices[0] "/dev/missing": host device does not exist`,
		},
		{
			name: "not a device",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				sys.addPath("/etc/passwd")
				c.Devices = []Device{{ContainerPath: "/dev/x", HostPath: "/etc/passwd"}}
			},
			wantErr: "not a character or block device",
		},
		{
			name: "bad permissions",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				addGPU(sys)
				c.Devices = []Device{{ContainerPath: "/dev/x", HostPath: "/dev/nvidia0", Permissions: "rx"}}
			},
			wantErr: `permissions "rx" are not a subset of "rwm"`,
		},
		{
			name: "repeated permissions",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				addGPU(sys)
				c.Devices = []Device{{ContainerPath: "/dev/x", HostPath: "/dev/nvidia0", Permissions: "rr"}}
			},
			wantErr: `permissions "rr"`,
		},
		{
			name: "relative container path",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				addGPU(sys)
				c.Devices = []Device{{ContainerPath: "dev/x", HostPath: "/dev/nvidia0"}}
			},
			wantErr: `container path "dev/x" is not absolute`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := build(t, tt.adjust)
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var nodes []string
			for _, d := range s.Linux.Devices {
				nodes = append(nodes, d.Path)
			}
			if strings.Join(nodes, " ") != strings.Join(tt.wantNodes, " ") {
				t.Errorf("nodes = %v, want %v", nodes, tt.wantNodes)
			}
			if got, want := ruleStrings(s.Linux.Resources.Devices), ruleStrings(tt.wantRules); got != want {
				t.Errorf("rules = %s, want %s", got, want)
			}
		})
	}
}

func ruleStrings(rules []specs.LinuxDeviceCgroup) string {
	var b strings.Builder
	for _, r := range rules {
		major, minor := "*", "*"
		if r.Major != nil {
			major = fmt.Sprint(*r.Major)
		}
		if r.Minor != nil {
			minor = fmt.Sprint(*r.Minor)
		}
		fmt.Fprintf(&b, "[allow=%v %s %s:%s %s]", r.Allow, r.Type, major, minor, r.Access)
	}
	return b.String()
}
