package oci

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// build runs the builder on the test host and fake system after letting the test adjust the inputs.
func build(t *testing.T, adjust func(c *Container, pod *Pod, sys *fakeSystem, h *Host)) (*specs.Spec, error) {
	t.Helper()
	c, pod, sys, h := testContainer(), testPod(), newFakeSystem(), testHost()
	if adjust != nil {
		adjust(c, pod, sys, &h)
	}
	return newTestBuilder(h, sys).Build(c, testImage(), pod)
}

func mustBuild(t *testing.T, adjust func(c *Container, pod *Pod, sys *fakeSystem, h *Host)) *specs.Spec {
	t.Helper()
	s, err := build(t, adjust)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func findMount(s *specs.Spec, dst string) (specs.Mount, bool) {
	var found specs.Mount
	n := 0
	for _, m := range s.Mounts {
		if m.Destination == dst {
			found = m
			n++
		}
	}
	return found, n == 1
}

func destinations(s *specs.Spec) []string {
	var out []string
	for _, m := range s.Mounts {
		out = append(out, m.Destination)
	}
	return out
}

func TestSystemMounts(t *testing.T) {
	for _, privileged := range []bool{false, true} {
		s := mustBuild(t, func(c *Container, pod *Pod, _ *fakeSystem, _ *Host) {
			c.Security.Privileged, pod.Privileged = privileged, privileged
		})
		want := []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/dev/shm", "/sys", "/sys/fs/cgroup"}
		if got := destinations(s); !slices.Equal(got, want) {
			t.Fatalf("privileged=%v: mounts %v, want %v", privileged, got, want)
		}
		mode := "ro"
		if privileged {
			mode = "rw"
		}
		for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
			m, _ := findMount(s, dst)
			if !slices.Contains(m.Options, mode) {
				t.Errorf("privileged=%v: %s options %v lack %q", privileged, dst, m.Options, mode)
			}
		}
	}
}

func TestPodFileMounts(t *testing.T) {
	files := func(pod *Pod, sys *fakeSystem) {
		pod.Hosts, pod.ResolvConf, pod.HostnameFile, pod.Shm = "/run/p/hosts", "/run/p/resolv.conf", "/run/p/hostname", "/run/p/shm"
		sys.addPath(pod.Hosts, pod.ResolvConf, pod.HostnameFile, pod.Shm)
	}
	tests := []struct {
		name    string
		adjust  func(c *Container, pod *Pod, sys *fakeSystem, h *Host)
		check   func(t *testing.T, s *specs.Spec)
		wantErr string
	}{
		{
			name:   "bound read-write",
			adjust: func(_ *Container, pod *Pod, sys *fakeSystem, _ *Host) { files(pod, sys) },
			check: func(t *testing.T, s *specs.Spec) {
				for dst, src := range map[string]string{"/etc/hosts": "/run/p/hosts", "/etc/resolv.conf": "/run/p/resolv.conf", "/etc/hostname": "/run/p/hostname", "/dev/shm": "/run/p/shm"} {
					m, ok := findMount(s, dst)
					if !ok || m.Source != src || m.Type != "bind" || !slices.Contains(m.Options, "rw") {
						t.Errorf("%s = %+v (unique %v), want rw bind of %s", dst, m, ok, src)
					}
				}
			},
		},
		{
			name: "read-only rootfs makes /etc files read-only but not /dev/shm",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, _ *Host) {
				files(pod, sys)
				c.Security.ReadonlyRootfs = true
			},
			check: func(t *testing.T, s *specs.Spec) {
				for _, dst := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"} {
					if m, _ := findMount(s, dst); !slices.Contains(m.Options, "ro") {
						t.Errorf("%s options %v, want ro", dst, m.Options)
					}
				}
				if m, _ := findMount(s, "/dev/shm"); !slices.Contains(m.Options, "rw") {
					t.Errorf("/dev/shm options %v, want rw", m.Options)
				}
				if !s.Root.Readonly {
					t.Error("root not read-only")
				}
			},
		},
		{
			name: "empty paths are skipped, /dev/shm a private tmpfs",
			check: func(t *testing.T, s *specs.Spec) {
				for _, dst := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"} {
					if _, ok := findMount(s, dst); ok {
						t.Errorf("%s mounted without a pod file", dst)
					}
				}
				if m, _ := findMount(s, "/dev/shm"); m.Type != "tmpfs" {
					t.Errorf("/dev/shm = %+v, want tmpfs", m)
				}
			},
		},
		{
			name: "host IPC binds the host's /dev/shm",
			adjust: func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
				c.Security.Namespaces.IPC = NamespaceNode
				sys.addPath("/dev/shm")
			},
			check: func(t *testing.T, s *specs.Spec) {
				if m, ok := findMount(s, "/dev/shm"); !ok || m.Type != "bind" || m.Source != "/dev/shm" {
					t.Errorf("/dev/shm = %+v, want bind of the host's", m)
				}
			},
		},
		{
			name: "missing pod file",
			adjust: func(_ *Container, pod *Pod, _ *fakeSystem, _ *Host) {
				pod.Hosts = "/run/p/gone"
			},
			wantErr: `pod file "/etc/hosts": host path "/run/p/gone" does not exist`,
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
			tt.check(t, s)
		})
	}
}

func TestCRIMounts(t *testing.T) {
	withMounts := func(ms ...Mount) func(c *Container, pod *Pod, sys *fakeSystem, h *Host) {
		return func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
			c.Mounts = ms
			for _, m := range ms {
				if strings.HasPrefix(m.HostPath, "/host/") {
					sys.addPath(m.HostPath)
				}
			}
		}
	}
	tests := []struct {
		name     string
		adjust   func(c *Container, pod *Pod, sys *fakeSystem, h *Host)
		dst      string
		wantSrc  string
		wantOpts []string
		wantRoot string // RootfsPropagation
		wantErr  string
	}{
		{
			name: "read-write private", adjust: withMounts(Mount{ContainerPath: "/data", HostPath: "/host/data"}),
			dst: "/data", wantSrc: "/host/data", wantOpts: []string{"rbind", "rprivate", "rw"},
		},
		{
			name: "read-only", adjust: withMounts(Mount{ContainerPath: "/data", HostPath: "/host/data", Readonly: true}),
			dst: "/data", wantSrc: "/host/data", wantOpts: []string{"rbind", "rprivate", "ro"},
		},
		{
			name:   "recursive read-only",
			adjust: withMounts(Mount{ContainerPath: "/data", HostPath: "/host/data", Readonly: true, RecursiveReadOnly: true}),
			dst:    "/data", wantSrc: "/host/data", wantOpts: []string{"rbind", "rprivate", "rro"},
		},
		{
			name:    "recursive read-only needs read-only",
			adjust:  withMounts(Mount{ContainerPath: "/data", HostPath: "/host/data", RecursiveReadOnly: true}),
			wantErr: "recursive read-only needs the mount read-only",
		},
		{
			name: "recursive read-only needs private propagation",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, h *Host) {
				withMounts(Mount{ContainerPath: "/data", HostPath: "/host/data", Readonly: true, RecursiveReadOnly: true, Propagation: PropagationHostToContainer})(c, pod, sys, h)
				sys.mounts["/host/data"] = [2]string{"slave", "/host"}
			},
			wantErr: "recursive read-only needs private propagation",
		},
		{
			name: "recursive read-only needs a new kernel",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, h *Host) {
				withMounts(Mount{ContainerPath: "/data", HostPath: "/host/data", Readonly: true, RecursiveReadOnly: true})(c, pod, sys, h)
				h.RecursiveReadOnly = false
			},
			wantErr: "Linux 5.12",
		},
		{
			name: "image volume is read-only", adjust: withMounts(Mount{ContainerPath: "/models", HostPath: "/host/img", Image: true}),
			dst: "/models", wantSrc: "/host/img", wantOpts: []string{"rbind", "rprivate", "ro"},
		},
		{
			name: "symlinked host path mounts its target",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, h *Host) {
				c.Mounts = []Mount{{ContainerPath: "/data", HostPath: "/link"}}
				sys.paths["/link"] = "/real/data"
			},
			dst: "/data", wantSrc: "/real/data", wantOpts: []string{"rbind", "rprivate", "rw"},
		},
		{
			name: "host-to-container on a slave mount",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, h *Host) {
				withMounts(Mount{ContainerPath: "/data", HostPath: "/host/data", Propagation: PropagationHostToContainer})(c, pod, sys, h)
				sys.mounts["/host/data"] = [2]string{"slave", "/host"}
			},
			dst: "/data", wantSrc: "/host/data", wantOpts: []string{"rbind", "rslave", "rw"}, wantRoot: "rslave",
		},
		{
			name: "host-to-container on a private mount",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, h *Host) {
				withMounts(Mount{ContainerPath: "/data", HostPath: "/host/data", Propagation: PropagationHostToContainer})(c, pod, sys, h)
				sys.mounts["/host/data"] = [2]string{"private", "/host"}
			},
			wantErr: `host path "/host/data" is on mount "/host", which is private; the requested propagation needs it shared or slave`,
		},
		{
			name: "bidirectional on a shared mount",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, h *Host) {
				withMounts(
					Mount{ContainerPath: "/a", HostPath: "/host/a", Propagation: PropagationBidirectional},
					Mount{ContainerPath: "/b", HostPath: "/host/b", Propagation: PropagationHostToContainer},
				)(c, pod, sys, h)
				sys.mounts["/host/a"] = [2]string{"shared", "/host"}
				sys.mounts["/host/b"] = [2]string{"shared", "/host"}
			},
			dst: "/a", wantSrc: "/host/a", wantOpts: []string{"rbind", "rshared", "rw"}, wantRoot: "rshared",
		},
		{
			name: "bidirectional on a slave mount",
			adjust: func(c *Container, pod *Pod, sys *fakeSystem, h *Host) {
				withMounts(Mount{ContainerPath: "/a", HostPath: "/host/a", Propagation: PropagationBidirectional})(c, pod, sys, h)
				sys.mounts["/host/a"] = [2]string{"slave", "/host"}
			},
			wantErr: "which is slave; the requested propagation needs it shared",
		},
		{
			name:    "unknown propagation",
			adjust:  withMounts(Mount{ContainerPath: "/a", HostPath: "/host/a", Propagation: 7}),
			wantErr: "unknown propagation 7",
		},
		{
			name:   "mount options",
			adjust: withMounts(Mount{ContainerPath: "/a", HostPath: "/host/a", Options: []string{"noexec", "nosuid", "nodev"}}),
			dst:    "/a", wantSrc: "/host/a", wantOpts: []string{"rbind", "rprivate", "rw", "noexec", "nosuid", "nodev"},
		},
		{
			name:    "filesystem option refused",
			adjust:  withMounts(Mount{ContainerPath: "/a", HostPath: "/host/a", Options: []string{"size=1g"}}),
			wantErr: `mount option "size=1g"`,
		},
		{
			name:    "missing host path",
			adjust:  withMounts(Mount{ContainerPath: "/data", HostPath: "/nowhere"}),
			wantErr: `mounts[0] "/data": host path "/nowhere" does not exist`,
		},
		{
			name:    "relative host path",
			adjust:  withMounts(Mount{ContainerPath: "/data", HostPath: "host/data"}),
			wantErr: `host path "host/data" is not absolute`,
		},
		{
			name:    "relative container path",
			adjust:  withMounts(Mount{ContainerPath: "data", HostPath: "/host/data"}),
			wantErr: `mounts[0]: container path "data" is not absolute`,
		},
		{
			name:    "over the root",
			adjust:  withMounts(Mount{ContainerPath: "/x/..", HostPath: "/host/data"}),
			wantErr: "cannot mount over the container's root",
		},
		{
			name:    "half an id mapping",
			adjust:  withMounts(Mount{ContainerPath: "/a", HostPath: "/host/a", UIDMappings: []IDMapping{{HostID: 1000, Length: 1}}}),
			wantErr: "needs both uid and gid mappings",
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
			m, ok := findMount(s, tt.dst)
			if !ok || m.Type != "bind" || m.Source != tt.wantSrc || !slices.Equal(m.Options, tt.wantOpts) {
				t.Fatalf("mount %s = %+v (unique %v), want bind of %s with %v", tt.dst, m, ok, tt.wantSrc, tt.wantOpts)
			}
			if s.Linux.RootfsPropagation != tt.wantRoot {
				t.Fatalf("rootfs propagation = %q, want %q", s.Linux.RootfsPropagation, tt.wantRoot)
			}
		})
	}
}

func TestMountMerging(t *testing.T) {
	s := mustBuild(t, func(c *Container, pod *Pod, sys *fakeSystem, _ *Host) {
		pod.Hosts, pod.ResolvConf = "/run/p/hosts", "/run/p/resolv.conf"
		sys.addPath(pod.Hosts, pod.ResolvConf, "/host/hosts", "/host/first", "/host/second", "/host/dev", "/host/deep", "/host/shallow")
		c.Mounts = []Mount{
			{ContainerPath: "/a/b/c", HostPath: "/host/deep"},
			{ContainerPath: "/etc/hosts", HostPath: "/host/hosts"}, // the kubelet's own /etc/hosts beats the pod's
			{ContainerPath: "/data", HostPath: "/host/first"},
			{ContainerPath: "/data/", HostPath: "/host/second"}, // same destination: the later wins
			{ContainerPath: "/dev", HostPath: "/host/dev"},      // takes /dev/pts, /dev/shm, /dev/mqueue with it
			{ContainerPath: "/a", HostPath: "/host/shallow"},
		}
	})
	// System mounts first, then bind mounts by depth, in input order within a depth.
	want := []string{"/proc", "/sys", "/sys/fs/cgroup", "/data", "/dev", "/a", "/etc/resolv.conf", "/etc/hosts", "/a/b/c"}
	if got := destinations(s); !slices.Equal(got, want) {
		t.Fatalf("mounts %v, want %v", got, want)
	}
	for dst, src := range map[string]string{"/etc/hosts": "/host/hosts", "/data": "/host/second", "/dev": "/host/dev"} {
		if m, _ := findMount(s, dst); m.Source != src {
			t.Errorf("%s from %s, want %s", dst, m.Source, src)
		}
	}
}

func TestIDMappedMount(t *testing.T) {
	s := mustBuild(t, func(c *Container, _ *Pod, sys *fakeSystem, _ *Host) {
		sys.addPath("/host/a")
		c.Mounts = []Mount{{
			ContainerPath: "/a", HostPath: "/host/a",
			UIDMappings: []IDMapping{{HostID: 100000, ContainerID: 0, Length: 65536}},
			GIDMappings: []IDMapping{{HostID: 200000, ContainerID: 0, Length: 65536}},
		}}
	})
	m, _ := findMount(s, "/a")
	want := []specs.LinuxIDMapping{{HostID: 100000, ContainerID: 0, Size: 65536}}
	if !slices.Equal(m.UIDMappings, want) || m.GIDMappings[0].HostID != 200000 {
		t.Fatalf("mappings = %+v / %+v", m.UIDMappings, m.GIDMappings)
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) {
	tests := []struct {
		name               string
		sec                Security
		wantMasked, wantRO []string
	}{
		{name: "nil means defaults", wantMasked: defaultMaskedPaths, wantRO: defaultReadonlyPaths},
		{name: "empty means none (procMount Unmasked)", sec: Security{MaskedPaths: []string{}, ReadonlyPaths: []string{}}},
		{name: "given lists", sec: Security{MaskedPaths: []string{"/proc/x"}, ReadonlyPaths: []string{"/proc/y"}}, wantMasked: []string{"/proc/x"}, wantRO: []string{"/proc/y"}},
		{name: "privileged means none", sec: Security{Privileged: true, MaskedPaths: []string{"/proc/x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustBuild(t, func(c *Container, pod *Pod, _ *fakeSystem, _ *Host) {
				tt.sec.Namespaces = c.Security.Namespaces
				c.Security = tt.sec
				pod.Privileged = true
			})
			if !slices.Equal(s.Linux.MaskedPaths, tt.wantMasked) || !slices.Equal(s.Linux.ReadonlyPaths, tt.wantRO) {
				t.Fatalf("masked %v readonly %v, want %v %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, tt.wantMasked, tt.wantRO)
			}
		})
	}
}
