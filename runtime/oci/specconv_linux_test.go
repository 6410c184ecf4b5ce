//go:build cgo

package oci

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/configs/validate"
	"github.com/opencontainers/runc/libcontainer/specconv"
)

// TestSpecconvAcceptsBuiltSpecs hands specs built on this host to libcontainer's converter and validator,
// the path the shim takes before creating a container: every configuration here must pass both.
func TestSpecconvAcceptsBuiltSpecs(t *testing.T) {
	host, err := DetectHost()
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuilder(host)

	rootfs := t.TempDir()
	dataDir := t.TempDir()
	layer := writeLayer(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	podFiles := t.TempDir()
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		if err := os.WriteFile(filepath.Join(podFiles, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	profile := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(profile, []byte(localProfile), 0o644); err != nil {
		t.Fatal(err)
	}

	// The pod's namespaces are stood in for by our own: specconv and the validator only need the paths.
	pod := func() *Pod {
		return &Pod{
			ID: "sandbox-1", Name: "web", Namespace: "default", UID: "uid-1", Hostname: "web-0",
			NetNS: "/proc/self/ns/net", IPCNS: "/proc/self/ns/ipc", UTSNS: "/proc/self/ns/uts", PIDNS: "/proc/self/ns/pid",
			CgroupParent: "/warmpod-test/pod-1",
			Hosts:        filepath.Join(podFiles, "hosts"),
			ResolvConf:   filepath.Join(podFiles, "resolv.conf"),
			HostnameFile: filepath.Join(podFiles, "hostname"),
		}
	}
	ctr := func() *Container {
		return &Container{
			ID: "ctr-1", Name: "app", Rootfs: rootfs,
			Security: Security{Namespaces: NamespaceOptions{PID: NamespaceContainer}},
		}
	}
	img := &Image{Name: "busybox", Cmd: []string{"sh"}, User: "app", Layers: []string{layer}}

	tests := []struct {
		name   string
		adjust func(c *Container, p *Pod)
	}{
		{name: "plain"},
		{name: "privileged", adjust: func(c *Container, p *Pod) {
			c.Security.Privileged, p.Privileged = true, true
		}},
		{name: "read-only rootfs", adjust: func(c *Container, _ *Pod) {
			c.Security.ReadonlyRootfs = true
		}},
		{name: "seccomp runtime default", adjust: func(c *Container, _ *Pod) {
			c.Security.Seccomp = &SecurityProfile{Type: ProfileRuntimeDefault}
			c.Security.NoNewPrivs = true
		}},
		{name: "seccomp localhost", adjust: func(c *Container, _ *Pod) {
			c.Security.Seccomp = &SecurityProfile{Type: ProfileLocalhost, LocalhostRef: profile}
		}},
		{name: "host namespaces", adjust: func(c *Container, p *Pod) {
			c.Security.Namespaces = NamespaceOptions{Network: NamespaceNode, PID: NamespaceNode, IPC: NamespaceNode}
			p.Hostname = ""
		}},
		{name: "pod pid and own uts", adjust: func(c *Container, p *Pod) {
			c.Security.Namespaces.PID = NamespacePod
			p.UTSNS = ""
		}},
		{name: "user namespace", adjust: func(c *Container, _ *Pod) {
			c.Security.Namespaces.UserNS = &UserNamespace{
				Mode: NamespacePod,
				UIDs: []IDMapping{{HostID: 100000, ContainerID: 0, Length: 65536}},
				GIDs: []IDMapping{{HostID: 100000, ContainerID: 0, Length: 65536}},
			}
		}},
		{name: "mounts, devices, resources, sysctls", adjust: func(c *Container, p *Pod) {
			c.Mounts = []Mount{
				{ContainerPath: "/data", HostPath: dataDir},
				{ContainerPath: "/ro", HostPath: dataDir, Readonly: true, Options: []string{"noexec"}},
			}
			if host.RecursiveReadOnly {
				c.Mounts = append(c.Mounts, Mount{ContainerPath: "/rro", HostPath: dataDir, Readonly: true, RecursiveReadOnly: true})
			}
			c.Devices = []Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rw"}}
			c.Resources = &Resources{
				CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 256, MemoryLimitInBytes: 64 << 20,
				CpusetCpus: "0", PidsLimit: 100, OOMScoreAdj: 500,
			}
			c.Security.CapAdd = []string{"NET_ADMIN"}
			c.Security.CapAddAmbient = []string{"NET_BIND_SERVICE"}
			c.Security.RunAsUser, c.Security.SupplementalGroups = ptr[int64](1000), []int64{2000}
			p.Sysctls = map[string]string{"kernel.shmmax": "65536"}
			p.OOMScoreAdjMin, p.OOMScoreAdjMax = HostOOMScoreAdjRange()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := ctr(), pod()
			if tt.adjust != nil {
				tt.adjust(c, p)
			}
			s, err := b.Build(c, img, p)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: c.ID, Spec: s})
			if err != nil {
				t.Fatalf("specconv: %v", err)
			}
			if err := validate.Validate(cfg); err != nil {
				t.Fatalf("validate: %v", err)
			}
			if cfg.Rootfs != rootfs || !cfg.Namespaces.Contains(configs.NEWNS) {
				t.Fatalf("config rootfs %q namespaces %v", cfg.Rootfs, cfg.Namespaces)
			}
		})
	}
}
