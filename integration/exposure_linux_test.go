package integration

import (
	"archive/tar"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/integration/testimages"
)

// nobody is the unprivileged host user of TestHostUsersCannotReachPods.
const nobody = 65534

// An unprivileged host user cannot reach a pod's files through the daemon's directories: a container's
// root filesystem (whose setuid binaries would run for anyone: the CVE-2021-41091 class) and its writable
// layer, the pod's /dev/shm, or the view of an image volume, whether the pod has a user namespace of its
// own or not (issue 12). The pod itself still works: its containers run, in a user namespace too, whose
// root is an unprivileged host user that must reach its root filesystem.
//
// The user is nobody (65534); the rootfs has bin/ and the view a world-readable root, so only the
// directories above them can keep the user out.
func TestHostUsersCannotReachPods(t *testing.T) {
	begin(t)
	pullImage(t, images.busybox)
	// The volume's image opens its root to everyone, as most images do: its
	// view is then only as closed as the directories above it.
	open, err := testimages.LayerFromEntries(
		testimages.Entry{Header: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}},
		testimages.Entry{Header: tar.Header{Name: "data", Typeflag: tar.TypeReg, Mode: 0o644}, Body: []byte("volume")},
	)
	if err != nil {
		t.Fatal(err)
	}
	volImg, err := testimages.Busybox(testimages.WithLayers(open))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push("library/open-volume:latest", volImg); err != nil {
		t.Fatal(err)
	}
	volRef := "docker.io/library/open-volume:latest"
	pullImage(t, volRef)
	for _, userns := range []bool{false, true} {
		name := "host-users"
		if userns {
			name += "-userns"
		}
		t.Run(name, func(t *testing.T) {
			if userns && !userNamespacesDeclared(t) {
				t.Skip("the runtime does not declare user namespaces on this host")
			}
			cfg := newPodConfig(name)
			if userns {
				nsOpts := usernsOptions(runtimeapi.NamespaceMode_POD, podMapping())
				cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: nsOpts}
			}
			podID := runPod(t, cfg)
			ctr := newContainerConfig("main", "sleep", "3600")
			check := "ls /bin/sh && touch /written && echo ok"
			if userns {
				ctr.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: cfg.Linux.SecurityContext.NamespaceOptions}
			} else {
				// Image volumes are not id-mapped: a pod with a user
				// namespace could not read one (before this test too).
				ctr.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: volRef}, Readonly: true}}
				check = "cat /img/data && " + check
			}
			id := runContainer(t, podID, cfg, ctr)
			if out, stderr, code := execSync(t, id, "sh", "-c", check); code != 0 || !strings.HasSuffix(out, "ok\n") {
				t.Fatalf("container cannot use its root filesystem or image volume: %q %q (exit %d)", out, stderr, code)
			}

			var reachable []string
			rootfses, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
				return m.FSType != "overlay" || !strings.HasPrefix(m.Mountpoint, filepath.Join(d.Root, "pods", podID)+"/"), false
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(rootfses) == 0 {
				t.Fatal("no root filesystem of the pod found in the mount table")
			}
			for _, m := range rootfses {
				reachable = append(reachable, m.Mountpoint+"/bin", filepath.Join(filepath.Dir(m.Mountpoint), "upper"))
			}
			reachable = append(reachable, filepath.Join(d.State, "pods", podID, "shm"))
			if !userns {
				views, err := filepath.Glob(filepath.Join(d.State, "image-volumes", podID, "*"))
				if err != nil || len(views) == 0 {
					t.Fatalf("no image volume view of the pod found: %v", err)
				}
				reachable = append(reachable, views[0])
			}
			for _, p := range reachable {
				if out, err := asUser(0, 0, "ls", p); err != nil {
					t.Errorf("root cannot list %s: %v\n%s", p, err, out)
				}
				if out, err := asUser(nobody, nobody, "ls", p); err == nil {
					t.Errorf("host user %d lists %s:\n%s", nobody, p, out)
				}
			}
		})
	}
}

// asUser runs busybox with args as uid:gid, without supplementary groups, and returns its output.
func asUser(uid, gid uint32, args ...string) (string, error) {
	cmd := exec.Command(testimages.BusyboxPath, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
