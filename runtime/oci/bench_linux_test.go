package oci

import (
	"os"
	"path/filepath"
	"testing"
)

// benchInputs is a typical kubelet CreateContainer on this host: an image user looked up through two
// layers, pod files, two volumes and resources.
func benchInputs(b *testing.B) (*Builder, *Container, *Image, *Pod) {
	b.Helper()
	host, err := DetectHost()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	write := func(p, content string) string {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
		return full
	}
	write("l0/etc/passwd", testPasswd)
	write("l0/etc/group", testGroup)
	write("l1/usr/bin/app", "")
	for _, v := range []string{"vol/a/x", "vol/b/x"} {
		write(v, "")
	}
	pod := &Pod{
		ID: "sandbox-1", Name: "web", Namespace: "default", UID: "uid-1", Hostname: "web-0",
		NetNS: "/run/warmpod/pods/sandbox-1/ns/net", IPCNS: "/run/warmpod/pods/sandbox-1/ns/ipc",
		UTSNS: "/run/warmpod/pods/sandbox-1/ns/uts", CgroupParent: "/kubepods/burstable/poduid-1",
		Hosts: write("pod/hosts", ""), ResolvConf: write("pod/resolv.conf", ""), HostnameFile: write("pod/hostname", ""),
	}
	c := &Container{
		ID: "ctr-1", Name: "app", Rootfs: filepath.Join(dir, "rootfs"),
		Args: []string{"--serve"}, Env: []string{"MODE=prod", "LOG=info"},
		Mounts: []Mount{
			{ContainerPath: "/data", HostPath: filepath.Join(dir, "vol/a")},
			{ContainerPath: "/config", HostPath: filepath.Join(dir, "vol/b"), Readonly: true},
		},
		Annotations: map[string]string{"io.kubernetes.container.restartCount": "0"},
		Resources:   &Resources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimitInBytes: 256 << 20},
		Security: Security{
			RunAsUser:  ptr[int64](1000),
			CapDrop:    []string{"NET_RAW"},
			Namespaces: NamespaceOptions{PID: NamespaceContainer},
		},
	}
	img := &Image{
		Name: "app:1", Entrypoint: []string{"/usr/bin/app"}, Env: []string{"PATH=/usr/bin:/bin"},
		Layers: []string{filepath.Join(dir, "l0"), filepath.Join(dir, "l1")},
	}
	return NewBuilder(host), c, img, pod
}

func BenchmarkBuild(b *testing.B) {
	for _, bc := range []struct {
		name    string
		seccomp *SecurityProfile
	}{
		{name: "unconfined"},
		{name: "seccomp-default", seccomp: &SecurityProfile{Type: ProfileRuntimeDefault}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			builder, c, img, pod := benchInputs(b)
			c.Security.Seccomp = bc.seccomp
			b.ReportAllocs()
			for b.Loop() {
				if _, err := builder.Build(c, img, pod); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
