package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox/network"
)

// daemon is the warmpod daemon of the run, with everything it was told to own.
type daemon struct {
	bin, dir                        string
	root, state, socket, configPath string
	logPath                         string
	bridge, subnet, chainPrefix     string
	cgroupParent                    string

	cmd    *exec.Cmd
	exited chan struct{}
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
	img    runtimeapi.ImageServiceClient
}

// newDaemon names the run's directories and network objects under dir, with a random suffix so two runs
// on one machine never share a bridge, chain or cgroup.
func newDaemon(bin, dir string) (*daemon, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	suffix := hex.EncodeToString(b)
	subnet, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "state")
	return &daemon{
		bin: bin, dir: dir,
		root:         filepath.Join(dir, "root"),
		state:        state,
		socket:       filepath.Join(state, "warmpod.sock"),
		configPath:   filepath.Join(dir, "warmpod.toml"),
		logPath:      filepath.Join(dir, "warmpod.log"),
		bridge:       "wpcrit" + suffix,
		subnet:       subnet,
		chainPrefix:  "WPCRIT" + strings.ToUpper(suffix),
		cgroupParent: "/warmpod-critest-" + suffix,
	}, nil
}

// fileConfig is the part of warmpod's TOML configuration the run sets.
type fileConfig struct {
	Root     string `toml:"root"`
	State    string `toml:"state"`
	Socket   string `toml:"socket"`
	LogLevel string `toml:"log_level"`
	Network  struct {
		Bridge      string `toml:"bridge"`
		Subnet      string `toml:"subnet"`
		ChainPrefix string `toml:"chain_prefix"`
	} `toml:"network"`
	Registry struct {
		Mirrors map[string][]string `toml:"mirrors"`
	} `toml:"registry"`
	Runtime struct {
		CgroupParent string `toml:"cgroup_parent"`
	} `toml:"runtime"`
}

// writeConfig writes the daemon's configuration file: its own places, and registryAddr (plain HTTP on
// loopback) as the mirror of each of hosts.
func (d *daemon) writeConfig(registryAddr string, hosts []string) error {
	var c fileConfig
	c.Root, c.State, c.Socket, c.LogLevel = d.root, d.state, d.socket, "debug"
	c.Network.Bridge, c.Network.Subnet, c.Network.ChainPrefix = d.bridge, d.subnet, d.chainPrefix
	c.Registry.Mirrors = map[string][]string{}
	for _, h := range hosts {
		c.Registry.Mirrors[h] = []string{"http://" + registryAddr}
	}
	c.Runtime.CgroupParent = d.cgroupParent
	var buf bytes.Buffer
	buf.WriteString("# warmpod configuration of a conformance run (integration/conformance)\n")
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return fmt.Errorf("encode daemon config: %w", err)
	}
	return os.WriteFile(d.configPath, buf.Bytes(), 0o644)
}

// start runs the daemon with its configuration file and waits until its socket answers Version.
func (d *daemon) start() error {
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open daemon log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, "--config", d.configPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(d.exited)
	}()
	conn, err := grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial daemon: %w", err)
	}
	d.conn = conn
	d.rt = runtimeapi.NewRuntimeServiceClient(conn)
	d.img = runtimeapi.NewImageServiceClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("daemon exited during startup (%s)", cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := d.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon not ready after a minute: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *daemon) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// removePods removes every container and pod the daemon lists, returning how many pods it removed.
func (d *daemon) removePods() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	ctrs, err := d.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs.Containers {
		if _, err := d.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.Id, err))
		}
	}
	pods, err := d.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("list pods: %w", err)
	}
	for _, p := range pods.Items {
		if _, err := d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod %s: %w", p.Id, err))
		}
		if _, err := d.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", p.Id, err))
		}
	}
	return len(pods.Items), errors.Join(errs...)
}

// stop sends SIGTERM and waits up to 30 s before killing the daemon.
func (d *daemon) stop() error {
	if d.conn != nil {
		_ = d.conn.Close()
	}
	if !d.running() {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("daemon did not stop within 30 s of SIGTERM; killed it")
	}
}

// uninstallNetwork removes the run's bridge and iptables chains with the network package's own
// uninstaller.
func (d *daemon) uninstallNetwork() error {
	n, err := network.NewEmbedded(network.EmbeddedConfig{
		Bridge: d.bridge, Subnet: d.subnet, ChainPrefix: d.chainPrefix, StateDir: filepath.Join(d.state, "network"),
	})
	if err != nil {
		return fmt.Errorf("uninstall network: %w", err)
	}
	if err := n.Uninstall(); err != nil {
		return fmt.Errorf("uninstall network: %w", err)
	}
	return nil
}

// removeCgroups removes the run's cgroup parent, and whatever is left below it, deepest first, in every
// mounted hierarchy (cgroup v1 controllers and the v2 tree alike).
func (d *daemon) removeCgroups() error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range roots {
		top := filepath.Join(r, d.cgroupParent)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, dir := range dirs {
			if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
			}
		}
	}
	return errors.Join(errs...)
}

// killCgroupProcs kills, by pid, every process still in the run's cgroups: one whose shim is gone (a
// crashed shim leaves its containers and pre-created generations behind). Each one is reported: it is a
// leak.
func (d *daemon) killCgroupProcs() error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	var errs []error
	killed := map[int]bool{}
	for _, r := range roots {
		_ = filepath.WalkDir(filepath.Join(r, d.cgroupParent), func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && !killed[pid] {
					killed[pid] = true
					errs = append(errs, fmt.Errorf("killed leftover process %d in cgroup %s", pid, filepath.Dir(p)))
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
	// Their cgroups can only be removed once they are gone.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		alive := false
		for pid := range killed {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				alive = true
			}
		}
		if !alive {
			break
		}
	}
	return errors.Join(errs...)
}

// cgroupRoots lists the mount points of the cgroup hierarchies.
func cgroupRoots() ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var roots []string
	for _, m := range infos {
		roots = append(roots, m.Mountpoint)
	}
	return roots, nil
}

// freeSubnet picks a /24 in 10.200.0.0/13 that no route of the host overlaps.
func freeSubnet() (string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("list routes: %w", err)
	}
	var used []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if p, err := netip.ParsePrefix(r.Dst.String()); err == nil && p.Bits() > 0 {
			used = append(used, p)
		}
	}
	b := make([]byte, 2)
	for range 100 {
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		cand := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%8, b[1]))
		free := true
		for _, u := range used {
			free = free && !u.Overlaps(cand)
		}
		if free {
			return cand.String(), nil
		}
	}
	return "", errors.New("no free /24 in 10.200.0.0/13 for the run's pod network")
}

// logTail is the end of the daemon's log, for a failed run.
func (d *daemon) logTail(n int) string {
	data, err := os.ReadFile(d.logPath)
	if err != nil {
		return fmt.Sprintf("(no daemon log: %v)", err)
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// removeLeftovers kills, by pid, processes of the run that outlived its pods (a shim is started with the
// run's state directory on its command line) and unmounts what is still mounted under dir, deepest first.
// Each one found is reported: it is a leak.
func removeLeftovers(dir string) error {
	var errs []error
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	self := os.Getpid()
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(p, "/proc/%d/cmdline", &pid); err != nil || pid == self {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, []byte(dir+"/")) {
			continue
		}
		errs = append(errs, fmt.Errorf("killed leftover process %d: %s", pid, bytes.ReplaceAll(data, []byte{0}, []byte{' '})))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("read mountinfo: %w", err))...)
	}
	var mounts []string
	for _, m := range infos {
		mounts = append(mounts, m.Mountpoint)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		errs = append(errs, fmt.Errorf("unmounted leftover mount %s", m))
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	return errors.Join(errs...)
}
