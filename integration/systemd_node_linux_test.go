package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
	"github.com/warmpod/warmpod/integration/testimages"
)

// A systemd node is Debian's systemd booted as PID 1 of private PID, mount,
// cgroup, network, UTS and IPC namespaces, the way system containers run it,
// with warmpod installed as the unit of deploy/systemd. Its root is an
// overlay of the host's root with a tmpfs on top, so nothing it writes
// reaches the host; /var/lib/warmpod is a directory of the test on disk (an
// overlay upper dir cannot sit on an overlay). Its cgroups are a subtree of
// the test's own, which the cgroup namespace makes its root, laid out as
// the host's (hybrid: v1 controllers and the named systemd hierarchy beside
// an empty v2) or as a pure v2 hierarchy ("unified"). Only what the test
// loads into it runs in it: the boot target pulls in the journal, D-Bus and
// the basic system, and units that would reach past the namespaces (the
// kernel's sysctls, modules, binfmt, udev, the clock) are masked.

// Cgroup layouts a node can boot with.
const (
	layoutHybrid  = "hybrid"
	layoutUnified = "unified"
)

// nodeShare is where the node sees the test's files (binaries, unit,
// configuration, images).
const nodeShare = "/opt/warmpod-test"

// nodeMasked are units the node must not start: they would change the
// host's kernel settings or clock, talk to its devices, or start services
// the host's root happens to have installed.
var nodeMasked = []string{
	"console-getty.service", "getty.target", "getty@.service", "serial-getty@.service",
	"systemd-sysctl.service", "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
	"systemd-modules-load.service", "kmod-static-nodes.service",
	"systemd-udevd.service", "systemd-udev-trigger.service", "systemd-udev-settle.service",
	"systemd-timesyncd.service", "systemd-networkd.service", "systemd-resolved.service",
	"systemd-pstore.service", "systemd-random-seed.service", "systemd-remount-fs.service",
	"networking.service", "ssh.service", "cron.service", "postgresql.service",
	"apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer", "fstrim.timer",
}

const nodeTarget = `[Unit]
Description=warmpod test node
Requires=basic.target
Wants=dbus.socket systemd-journald.socket
After=basic.target
AllowIsolate=yes
`

type systemdNode struct {
	t      *testing.T
	layout string
	dir    string // on the host: the node's files
	share  string // dir/share, the node's nodeShare
	// cgroupDirs are the cgroups made for the node on the host, one per
	// hierarchy; each is the root of the node's cgroup namespace.
	cgroupDirs []string
	launcher   *exec.Cmd
	exited     chan struct{}
	// pid is the node's systemd as the host sees it.
	pid int
}

// systemdCanBoot says why a node cannot boot here, or "".
func systemdCanBoot(layout string) string {
	for _, p := range []string{"/lib/systemd/systemd", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/systemctl", "/usr/bin/dbus-daemon"} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("%s is missing (apt-get install systemd dbus util-linux, or make deps)", p)
		}
	}
	if layout == layoutHybrid && cgroups.IsCgroup2UnifiedMode() {
		return "the host has cgroup v2 only: a hybrid node needs the host's v1 hierarchies"
	}
	return ""
}

// bootSystemd boots a node with the given cgroup layout and warmpod's unit
// installed (not started) with config as /etc/warmpod/config.toml. The node
// powers off at the end of the test, and everything it made is removed.
func bootSystemd(t *testing.T, layout, config string) *systemdNode {
	t.Helper()
	if why := systemdCanBoot(layout); why != "" {
		t.Skipf("cannot boot systemd: %s", why)
	}
	dir, err := os.MkdirTemp("", "warmpod-sd-")
	if err != nil {
		t.Fatal(err)
	}
	// A pod with its own user namespace reaches its rootfs as an
	// unprivileged host user.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	n := &systemdNode{t: t, layout: layout, dir: dir, share: filepath.Join(dir, "share"), exited: make(chan struct{})}
	t.Cleanup(n.destroy)
	for _, sub := range []string{"ovl", "data", "share"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	n.prepareShare(config)
	if err := n.makeCgroups(); err != nil {
		t.Fatal(err)
	}
	script, err := n.bootScript()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "boot.sh"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	console, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	// The launcher joins the node's cgroups, then unshare makes the
	// namespaces and forks the shell that becomes systemd. If the test
	// binary dies, the launcher gets SIGKILL and unshare takes the node
	// down with it (--kill-child).
	var procs []string
	for _, d := range n.cgroupDirs {
		procs = append(procs, shellQuote(filepath.Join(d, "cgroup.procs")))
	}
	launch := fmt.Sprintf("set -eu\nfor f in %s; do echo $$ > \"$f\"; done\n"+
		"exec unshare --cgroup --pid --mount --net --uts --ipc --fork --kill-child --propagation private /bin/bash %s\n",
		strings.Join(procs, " "), shellQuote(filepath.Join(dir, "boot.sh")))
	n.launcher = exec.Command("/bin/bash", "-c", launch)
	n.launcher.Stdout = console
	n.launcher.Stderr = console
	n.launcher.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.launcher.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.launcher.Wait(); close(n.exited) }()

	waitFor(t, "the node's systemd to start", func() (bool, string) {
		select {
		case <-n.exited:
			t.Fatalf("the node exited while booting:\n%s", n.consoleLog())
		default:
		}
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", n.launcher.Process.Pid, n.launcher.Process.Pid))
		if f := strings.Fields(string(data)); len(f) > 0 {
			n.pid, _ = strconv.Atoi(f[0])
		}
		if n.pid == 0 {
			return false, "unshare has not forked yet"
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n.pid))
		return strings.TrimSpace(string(comm)) == "systemd", "pid 1 runs " + strings.TrimSpace(string(comm))
	})
	// is-system-running --wait returns once the boot is over; before the
	// manager listens it cannot connect, and that is retried.
	var state string
	waitFor(t, "the node to boot", func() (bool, string) {
		out, _ := n.command("systemctl", "is-system-running", "--wait").CombinedOutput()
		state = strings.TrimSpace(string(out))
		return state == "running" || state == "degraded", "systemctl is-system-running: " + state
	})
	if state != "running" {
		out, _ := n.command("systemctl", "--failed", "--no-pager").CombinedOutput()
		t.Logf("the node booted %s:\n%s", state, out)
	}
	return n
}

// prepareShare puts the binaries, the unit, the configuration and a busybox
// image where the node sees them.
func (n *systemdNode) prepareShare(config string) {
	t := n.t
	copyFile := func(src, name string, mode os.FileMode) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.share, name), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(d.Bin, "warmpod", 0o755)
	copyFile(warmpodctl(t), "warmpodctl", 0o755)
	unit, err := os.ReadFile("../deploy/systemd/warmpod.service")
	if err != nil {
		t.Fatal(err)
	}
	unit = bytes.Replace(unit, []byte("ExecStart=/usr/local/bin/warmpod"), []byte("ExecStart="+nodeShare+"/warmpod"), 1)
	if !bytes.Contains(unit, []byte("ExecStart="+nodeShare)) {
		t.Fatal("deploy/systemd/warmpod.service has no ExecStart=/usr/local/bin/warmpod line")
	}
	for name, data := range map[string][]byte{
		"warmpod.service":     unit,
		"warmpod-test.target": []byte(nodeTarget),
		"config.toml":         []byte(config),
	} {
		if err := os.WriteFile(filepath.Join(n.share, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img, err := testimages.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(n.share, "busybox.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := testimages.WriteOCILayout(f, map[string]any{"docker.io/library/busybox:latest": img}); err != nil {
		t.Fatal(err)
	}
}

// makeCgroups creates the node's cgroup in every hierarchy, below the
// test's own cgroup there.
func (n *systemdNode) makeCgroups() error {
	own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return err
	}
	name := filepath.Base(n.dir)
	for _, m := range mounts {
		if !strings.HasPrefix(m.Mountpoint, "/sys/fs/cgroup") {
			continue
		}
		key := ""
		if m.FSType == "cgroup" {
			key = v1Key(m.VFSOptions)
		}
		path, ok := own[key]
		if !ok {
			continue
		}
		dir := filepath.Join(m.Mountpoint, path, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		n.cgroupDirs = append(n.cgroupDirs, dir)
		if strings.Contains(","+m.VFSOptions+",", ",cpuset,") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return err
				}
			}
		}
	}
	if len(n.cgroupDirs) == 0 {
		return errors.New("no cgroup hierarchy found under /sys/fs/cgroup")
	}
	return nil
}

// v1Key is the name /proc/self/cgroup gives a v1 hierarchy with these
// superblock options: its controllers, comma separated ("cpu,cpuacct"), or
// "name=systemd".
func v1Key(opts string) string {
	var keep []string
	for _, o := range strings.Split(opts, ",") {
		if isController(o) || strings.HasPrefix(o, "name=") {
			keep = append(keep, o)
		}
	}
	return strings.Join(keep, ",")
}

func isController(o string) bool {
	switch o {
	case "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio", "blkio",
		"perf_event", "hugetlb", "pids", "rdma", "misc":
		return true
	}
	return false
}

// bootScript is what PID 1 of the new namespaces runs before it becomes
// systemd: it builds the node's root and execs systemd in it.
func (n *systemdNode) bootScript() (string, error) {
	var cg strings.Builder
	switch n.layout {
	case layoutUnified:
		cg.WriteString("mount -t cgroup2 cgroup2 \"$M/sys/fs/cgroup\"\n")
	case layoutHybrid:
		cg.WriteString("mount -t tmpfs -o mode=0755 tmpfs \"$M/sys/fs/cgroup\"\n")
		mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
		if err != nil {
			return "", err
		}
		for _, m := range mounts {
			if filepath.Dir(m.Mountpoint) != "/sys/fs/cgroup" {
				continue
			}
			target := shellQuote(filepath.Base(m.Mountpoint))
			if m.FSType == "cgroup2" {
				fmt.Fprintf(&cg, "mkdir \"$M/sys/fs/cgroup/\"%s && mount -t cgroup2 cgroup2 \"$M/sys/fs/cgroup/\"%s\n", target, target)
				continue
			}
			opts := v1Key(m.VFSOptions)
			if strings.HasPrefix(opts, "name=") {
				opts = "none," + opts
			}
			fmt.Fprintf(&cg, "mkdir \"$M/sys/fs/cgroup/\"%s && mount -t cgroup -o %s cgroup \"$M/sys/fs/cgroup/\"%s\n", target, shellQuote(opts), target)
		}
	default:
		return "", fmt.Errorf("unknown cgroup layout %q", n.layout)
	}
	var masks strings.Builder
	for _, u := range nodeMasked {
		fmt.Fprintf(&masks, "ln -sf /dev/null \"$M/etc/systemd/system/\"%s\n", shellQuote(u))
	}
	return fmt.Sprintf(`set -eu
D=%s
S=%s
mount -t tmpfs -o mode=0755 tmpfs "$D/ovl"
mkdir "$D/ovl/upper" "$D/ovl/work" "$D/ovl/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$D/ovl/upper,workdir=$D/ovl/work" "$D/ovl/root"
M=$D/ovl/root
mount -t proc proc "$M/proc"
mount -t sysfs sysfs "$M/sys"
# A /dev of its own: the host's console and kernel log stay the host's.
mount -t tmpfs -o mode=0755 tmpfs "$M/dev"
for n in null zero full random urandom tty; do touch "$M/dev/$n"; mount --bind "/dev/$n" "$M/dev/$n"; done
mkdir "$M/dev/pts" "$M/dev/shm" "$M/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$M/dev/shm"
ln -s /proc/self/fd "$M/dev/fd"
touch "$M/dev/console" "$M/dev/kmsg"
mount --bind "$D/console.log" "$M/dev/console"
mount --bind /dev/null "$M/dev/kmsg"
%smount -t tmpfs -o mode=0755 tmpfs "$M/run"
mount -t tmpfs -o mode=1777 tmpfs "$M/tmp"
mkdir -p "$M/var/lib/warmpod" "$M$S" "$M/etc/warmpod"
mount --bind "$D/data" "$M/var/lib/warmpod"
mount --bind -o ro "$D/share" "$M$S"
rm -rf "$M"/etc/systemd/system/*.wants
cp "$D/share/warmpod.service" "$D/share/warmpod-test.target" "$M/etc/systemd/system/"
cp "$D/share/config.toml" "$M/etc/warmpod/config.toml"
%secho warmpod-node > "$M/etc/hostname"
export container=warmpod-test
exec chroot "$M" /lib/systemd/systemd --unit=warmpod-test.target
`, shellQuote(n.dir), nodeShare, cg.String(), masks.String()), nil
}

// command runs name inside the node, with its namespaces and root.
func (n *systemdNode) command(name string, args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(n.pid), "-a", "-r", "-w", "--", name}, args...)
	cmd := exec.Command("nsenter", full...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER=", "LANG=C"}
	return cmd
}

// run runs a command in the node and returns its output; a failure fails
// the test.
func (n *systemdNode) run(name string, args ...string) string {
	n.t.Helper()
	out, err := n.command(name, args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("node: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (n *systemdNode) systemctl(args ...string) string {
	n.t.Helper()
	return n.run("systemctl", append([]string{"--no-pager"}, args...)...)
}

// show returns a unit's properties.
func (n *systemdNode) show(unit string, props ...string) map[string]string {
	n.t.Helper()
	out := n.systemctl("show", unit, "--property="+strings.Join(props, ","))
	m := map[string]string{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok {
			m[k] = v
		}
	}
	return m
}

// path is where the host reaches path of the node's file system.
func (n *systemdNode) path(p string) string {
	return fmt.Sprintf("/proc/%d/root%s", n.pid, p)
}

// journal returns the journal of a unit.
func (n *systemdNode) journal(unit string) string {
	n.t.Helper()
	return n.run("journalctl", "--no-pager", "-o", "cat", "-u", unit)
}

func (n *systemdNode) consoleLog() string {
	data, _ := os.ReadFile(filepath.Join(n.dir, "console.log"))
	return string(data)
}

// nodeClient is a connection to the warmpod serving in a node.
type nodeClient struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient
	wp   warmpodv1.WarmpodClient
}

// dial connects to the node's warmpod through its socket.
func (n *systemdNode) dial(socket string) *nodeClient {
	n.t.Helper()
	conn, err := grpc.NewClient("unix://"+n.path(socket), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { conn.Close() })
	return &nodeClient{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn), wp: warmpodv1.NewWarmpodClient(conn)}
}

// destroy powers the node off, or kills it if it does not go, and removes
// its cgroups and files.
func (n *systemdNode) destroy() {
	t := n.t
	if n.launcher != nil && n.launcher.Process != nil {
		if t.Failed() && n.pid > 0 {
			if out, err := n.command("journalctl", "--no-pager", "-b", "-n", "300").CombinedOutput(); err == nil {
				t.Logf("node journal (last 300 lines):\n%s", out)
			}
		}
		if n.pid > 0 {
			// SIGRTMIN+4 asks systemd for a poweroff, as systemctl
			// poweroff does, without a client that could hang.
			_ = syscall.Kill(n.pid, syscall.Signal(34+4))
		}
		select {
		case <-n.exited:
		case <-time.After(time.Minute):
			t.Errorf("the node did not power off within a minute: killing it")
			_ = n.launcher.Process.Kill()
			if n.pid > 0 {
				_ = syscall.Kill(n.pid, syscall.SIGKILL)
			}
			<-n.exited
		}
	}
	// Every process of the node is gone with its PID namespace; its cgroups
	// are empty and go children first. The kernel may refuse a cgroup for
	// a moment after its last process left.
	for _, root := range n.cgroupDirs {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := removeCgroupDir(dirs[i]); err != nil {
				t.Errorf("remove the node's cgroup %s: %v", dirs[i], err)
			}
		}
	}
	if err := os.RemoveAll(n.dir); err != nil {
		t.Errorf("remove the node's files: %v", err)
	}
}

func removeCgroupDir(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// readNodeFile reads a file of the node.
func (n *systemdNode) readFile(p string) string {
	n.t.Helper()
	data, err := os.ReadFile(n.path(p))
	if err != nil {
		n.t.Fatal(err)
	}
	return string(data)
}
