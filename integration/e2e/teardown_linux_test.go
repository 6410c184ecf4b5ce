package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	goiptables "github.com/coreos/go-iptables/iptables"
	"github.com/moby/sys/mountinfo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/integration/launch"
	"github.com/warmpod/warmpod/sandbox/network"
)

// kubeletSysctls are the kernel settings the kubelet sets on start (setupKernelTunables in its container
// manager); the run puts back what it found.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// hostState is what the run may change on the host outside its own names: iptables chains, the kubelet's
// sysctls and /var/log/containers (the kubelet's fixed directory of log links).
type hostState struct {
	chains   []string
	sysctls  map[string]string
	logLinks []string
}

func (c *cluster) hostState() (hostState, error) {
	s := hostState{sysctls: map[string]string{}}
	for _, k := range kubeletSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return s, err
		}
		s.sysctls[k] = strings.TrimSpace(string(v))
	}
	ipt, err := goiptables.New()
	if err == nil {
		for _, table := range []string{"filter", "nat", "mangle"} {
			chains, err := ipt.ListChains(table)
			if err != nil {
				return s, fmt.Errorf("list %s chains: %w", table, err)
			}
			for _, ch := range chains {
				s.chains = append(s.chains, table+"/"+ch)
			}
		}
	}
	entries, _ := os.ReadDir("/var/log/containers")
	for _, e := range entries {
		s.logLinks = append(s.logLinks, e.Name())
	}
	sort.Strings(s.chains)
	sort.Strings(s.logLinks)
	return s, nil
}

// tearDown ends everything the run started, in the order that lets each part clean up after itself, and
// then removes and reports whatever is left. Each thing left is an error: it is a leak.
func (c *cluster) tearDown() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if c.cs != nil && c.kubelet.pid() > 0 && c.apiserver.pid() > 0 {
		if err := c.deleteAllPods(ctx); err != nil {
			errs = append(errs, fmt.Errorf("delete pods through the API: %w", err))
		}
	}
	for _, p := range []*proc{c.kubelet, c.sched, c.cm, c.apiserver, c.etcd} {
		if err := p.stop(30 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if c.rt != nil && c.wp.pid() > 0 {
		if err := c.removeAllCRIPods(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove pods through CRI: %w", err))
		}
	}
	if err := c.wp.stop(30 * time.Second); err != nil {
		errs = append(errs, err)
	}
	// warmpod releases what a pod's shim left mounted when it stops the pod, and says so: a shim that
	// was told to shut down and left a root filesystem lost a generation.
	if log, err := os.ReadFile(c.logPath("warmpod")); err == nil {
		if n := strings.Count(string(log), "left root filesystems mounted"); n > 0 {
			errs = append(errs, fmt.Errorf("%d pods' shims left root filesystems mounted (warmpod.log)", n))
		}
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
	// The kubelet makes its root directory a shared bind mount of itself; that one is the kubelet's to
	// leave, not a leak.
	_ = syscall.Unmount(c.kubeletRoot, syscall.MNT_DETACH)
	errs = append(errs, c.removeLeftovers()...)
	if c.subnet != "" {
		if err := c.uninstallNetwork(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.removeCgroups()...)
	errs = append(errs, c.restoreHost()...)
	if c.reg != nil {
		if err := c.reg.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	c.keepLogs()
	if err := os.RemoveAll(c.base); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		fmt.Println("e2e teardown: no process, mount, cgroup, link, iptables chain, sysctl or log link left")
	}
	return errors.Join(errs...)
}

// deleteAllPods deletes every pod of the run's namespaces and the static pods' manifests, and waits until
// the kubelet has stopped them all.
func (c *cluster) deleteAllPods(ctx context.Context) error {
	c.saveShimLogs()
	entries, _ := os.ReadDir(c.staticPods)
	for _, e := range entries {
		_ = os.Remove(filepath.Join(c.staticPods, e.Name()))
	}
	nss, err := c.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	zero := int64(0)
	for _, ns := range nss.Items {
		if ns.Name == "kube-system" || ns.Name == "kube-public" || ns.Name == "kube-node-lease" {
			continue
		}
		_ = c.cs.AppsV1().Deployments(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = c.cs.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	}
	// The kubelet stops each pod's containers and sandbox, then the API forgets the pod; warmpod then
	// lists no running sandbox.
	return c.poll(ctx, c.kubelet, 2*time.Minute, func() error {
		pods, err := c.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if n := len(pods.Items); n > 0 {
			return fmt.Errorf("%d pods still in the API", n)
		}
		sbs, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
		if err != nil {
			return err
		}
		if n := len(sbs.Items); n > 0 {
			return fmt.Errorf("%d pod sandboxes still ready", n)
		}
		return nil
	})
}

// removeAllCRIPods removes every container and pod warmpod still has (the kubelet leaves stopped ones to
// its garbage collection, which the run does not wait for).
func (c *cluster) removeAllCRIPods(ctx context.Context) error {
	var errs []error
	ctrs, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return err
	}
	for _, ct := range ctrs.Containers {
		if _, err := c.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ct.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	pods, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, err)
		}
		if _, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// processes lists live processes of the run: those running a binary of the run, those whose command line
// names its directory (shims) and those in its cgroups.
func (c *cluster) processes() []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) < 2 || fields[1] == "2" || fields[0] == "Z" {
			continue // kernel threads; zombies are their parent's to reap
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		ours := under(exe, c.base) || (c.k8sBin != "" && under(exe, c.k8sBin)) ||
			strings.Contains(string(cmdline), c.base) ||
			strings.Contains(string(cg), c.kubeCgroupRoot) // also matches the "-default" parent
		if ours {
			out = append(out, fmt.Sprintf("pid %d exe %s cmdline %q", pid, exe, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return out
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// removeLeftovers kills leftover processes by PID and unmounts leftover mounts under the run's directory.
func (c *cluster) removeLeftovers() []error {
	var errs []error
	// Shims and containers end a moment after the RPC that stops them.
	deadline := time.Now().Add(20 * time.Second)
	procs := c.processes()
	for len(procs) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		procs = c.processes()
	}
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(p, "pid %d", &pid); err == nil && pid > 1 {
			errs = append(errs, fmt.Errorf("killing leftover process: %s", p))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	infos, _ := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) { return !under(m.Mountpoint, c.base), false })
	sort.Slice(infos, func(i, j int) bool { return len(infos[i].Mountpoint) > len(infos[j].Mountpoint) })
	for _, m := range infos {
		errs = append(errs, fmt.Errorf("unmounting leftover mount %s (%s)", m.Mountpoint, m.FSType))
		_ = syscall.Unmount(m.Mountpoint, syscall.MNT_DETACH)
	}
	return errs
}

// uninstallNetwork removes the run's bridge and iptables chains with warmpod's own uninstaller, and checks
// they are gone.
func (c *cluster) uninstallNetwork() error {
	return launch.UninstallNetwork(network.EmbeddedConfig{
		Bridge: c.bridge, Subnet: c.subnet, ChainPrefix: c.chainPrefix,
		StateDir: filepath.Join(c.wpState, "network"),
	})
}

// cgroupHierarchies lists where cgroup hierarchies are mounted.
func cgroupHierarchies() ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range infos {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}

// makeKubeCgroupRoot creates the kubelet's cgroup root in every hierarchy: the kubelet requires it to exist.
func (c *cluster) makeKubeCgroupRoot() error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := os.MkdirAll(filepath.Join(h, c.kubeCgroupRoot), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// removeCgroups removes the run's cgroup trees. A cgroup below a root is a leak; the roots are the run's.
func (c *cluster) removeCgroups() []error {
	var errs []error
	hs, _ := cgroupHierarchies()
	for _, h := range hs {
		for _, root := range []string{c.kubeCgroupRoot, c.wpCgroupParent} {
			top := filepath.Join(h, root)
			var dirs []string
			_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			// Deepest first.
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				rel := strings.TrimPrefix(d, top)
				// The kubelet's own tree (kubepods, QoS classes, pod cgroups) is its to clean up lazily;
				// anything below a pod cgroup is warmpod's and must be gone with the pod.
				if belowPodCgroup(rel) {
					errs = append(errs, fmt.Errorf("removing leftover cgroup %s", d))
				}
				if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				}
			}
		}
	}
	return errs
}

// belowPodCgroup tells whether a cgroup path (relative to the kubelet's root) is inside a pod cgroup
// ("pod<uid>"), not the pod cgroup itself.
func belowPodCgroup(rel string) bool {
	parts := strings.Split(strings.Trim(rel, "/"), "/")
	for i, p := range parts {
		if strings.HasPrefix(p, "pod") && i < len(parts)-1 {
			return true
		}
	}
	return false
}

// restoreHost puts back the kubelet's sysctls, removes the log links of the run's containers, and reports
// any iptables chain that was not there before.
func (c *cluster) restoreHost() []error {
	var errs []error
	for k, v := range c.before.sysctls {
		cur, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err == nil && strings.TrimSpace(string(cur)) != v {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, v, err))
			}
		}
	}
	entries, _ := os.ReadDir("/var/log/containers")
	for _, e := range entries {
		p := filepath.Join("/var/log/containers", e.Name())
		if target, err := os.Readlink(p); err == nil && under(target, c.base) {
			_ = os.Remove(p)
		}
	}
	after, err := c.hostState()
	if err != nil {
		return append(errs, err)
	}
	for _, ch := range after.chains {
		if !slices.Contains(c.before.chains, ch) {
			errs = append(errs, fmt.Errorf("iptables chain %s was made by the run and is still there", ch))
		}
	}
	for k, v := range c.before.sysctls {
		if after.sysctls[k] != v {
			errs = append(errs, fmt.Errorf("sysctl %s is %s, was %s", k, after.sysctls[k], v))
		}
	}
	return errs
}

// saveShimLogs copies each pod shim's log into the run's log directory (a pod's state directory, with its
// log, goes with the pod).
func (c *cluster) saveShimLogs() {
	paths, _ := filepath.Glob(filepath.Join(c.wpState, "pods", "*", "shim.log"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		id := filepath.Base(filepath.Dir(p))
		_ = os.WriteFile(filepath.Join(c.logDir, "shim-"+id[:min(12, len(id))]+".log"), data, 0o644)
	}
}

// keepLogs copies the run's logs to $E2E_LOG_DIR, when set, before the run's directory goes.
func (c *cluster) keepLogs() {
	dst := os.Getenv("E2E_LOG_DIR")
	if dst == "" {
		return
	}
	dst = filepath.Join(dst, filepath.Base(c.base))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return
	}
	entries, _ := os.ReadDir(c.logDir)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(c.logDir, e.Name()))
		if err == nil {
			_ = os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644)
		}
	}
	fmt.Printf("e2e logs kept in %s\n", dst)
}

// httpGet fetches url and fails unless it answers 200. The components' serving certificates are their own
// self-signed ones, on loopback: they are not verified.
func httpGet(ctx context.Context, url string, out *[]byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health checks only
	}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	if out != nil {
		*out = body
	}
	return nil
}
