//go:build cgo

package oci

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/configs/validate"
	"github.com/opencontainers/runc/libcontainer/specconv"
)

// FuzzBuild translates container configs with fuzzed pod-author fields (command, environment, working
// dir, mount paths and options, capabilities, sysctls, user, devices' container paths) into OCI specs for
// this host: Build never panics, every error is ErrInvalidArgument, and every spec it builds is one
// libcontainer's converter and validator accept (a spec they refused would fail only at start).
func FuzzBuild(f *testing.F) {
	host, err := DetectHost()
	if err != nil {
		f.Skipf("detect host: %v", err)
	}
	b := NewBuilder(host)
	dataDir := f.TempDir()
	layer := filepath.Join(f.TempDir(), "layer")
	if err := os.MkdirAll(filepath.Join(layer, "etc"), 0o755); err != nil {
		f.Fatal(err)
	}
	for name, content := range map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup} {
		if err := os.WriteFile(filepath.Join(layer, name), []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	rootfs := f.TempDir()
	f.Add("sh\x00-c\x00echo hi", "A=1\nB=2", "/work", "/data", "ro,noexec", "NET_ADMIN", "kernel.shm_rmid_forced", "1", "app", "/dev/mynull")
	f.Add("", "", "", "/", "", "ALL", "net.ipv4.ip_forward", "1", "0", "/dev/../etc/x")
	f.Add("true", "=x\nPATH", "relative", "data", "rshared", "CAP_SYS_ADMIN", "vm.swappiness", "0", "nobody:nogroup", "dev/x")
	f.Add("x", "A=\x00", "/proc/self", "/proc", "nosuid,nodev", "BOGUS", "kernel.msgmax", "\n", "4294967296", "/dev")
	f.Fuzz(func(t *testing.T, command, env, workdir, mountPath, mountOpts, capAdd, sysctlKey, sysctlValue, user, devPath string) {
		c := &Container{
			ID: "fuzz", Name: "app", Rootfs: rootfs,
			Command:    strings.Split(command, "\x00"),
			Env:        strings.Split(env, "\n"),
			WorkingDir: workdir,
			Mounts:     []Mount{{ContainerPath: mountPath, HostPath: dataDir, Options: splitNonEmpty(mountOpts)}},
			Devices:    []Device{{ContainerPath: devPath, HostPath: "/dev/null"}},
			Sysctls:    map[string]string{sysctlKey: sysctlValue},
			Security: Security{
				Namespaces:    NamespaceOptions{PID: NamespaceContainer},
				CapAdd:        splitNonEmpty(capAdd),
				RunAsUsername: user,
			},
		}
		pod := &Pod{
			ID: "sandbox", Name: "web", Namespace: "default", UID: "uid", Hostname: "web-0",
			NetNS: "/proc/self/ns/net", IPCNS: "/proc/self/ns/ipc", UTSNS: "/proc/self/ns/uts",
			CgroupParent: "/warmpod-fuzz/pod",
		}
		img := &Image{Name: "busybox", Cmd: []string{"sh"}, Layers: []string{layer}}
		s, err := b.Build(c, img, pod)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Build failed other than with ErrInvalidArgument: %v", err)
			}
			return
		}
		cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: c.ID, Spec: s})
		if err != nil {
			t.Fatalf("Build made a spec specconv refuses: %v", err)
		}
		// The pod's network namespace here is a stand-in, the test's own
		// (the host's), where libcontainer rightly refuses net.* sysctls;
		// a pod's is its own.
		for i := range cfg.Namespaces {
			if cfg.Namespaces[i].Type == configs.NEWNET {
				cfg.Namespaces[i].Path = ""
			}
		}
		if err := validate.Validate(cfg); err != nil {
			t.Fatalf("Build made a spec libcontainer's validator refuses: %v", err)
		}
	})
}

func splitNonEmpty(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
