package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/integration/testimages"
)

// Node label and taint of the cluster's one node; the RuntimeClass "warmpod" selects and tolerates them.
const (
	nodeName   = "warmpod-e2e"
	nodeLabel  = "warmpod.io/runtime"
	nodeTaint  = "warmpod.io/runtime"
	labelValue = "warmpod"
)

// cluster is one run's Kubernetes control plane, kubelet and warmpod daemon, all on loopback, with
// directories, ports, bridge, subnet, chain prefix and cgroups of its own.
type cluster struct {
	base, logDir string
	k8sBin       string
	suffix       string
	// evented tells whether the kubelet runs with the EventedPLEG gate.
	evented bool

	pki *pki
	reg *testimages.Registry

	wpBin, wpRoot, wpState, wpSocket, wpConfig  string
	bridge, subnet, chainPrefix, wpCgroupParent string
	// kubeCgroupRoot is the kubelet's --cgroup-root: kubepods and every pod cgroup are under it.
	kubeCgroupRoot string
	kubeletRoot    string
	podLogs        string
	staticPods     string

	etcdPort, etcdPeerPort, apiPort, cmPort, schedPort, kubeletPort, kubeletHealthz int

	wp, etcd, apiserver, cm, sched, kubelet *proc

	restCfg *rest.Config
	cs      kubernetes.Interface
	conn    *grpc.ClientConn
	rt      runtimeapi.RuntimeServiceClient

	// before is the host state the run compares with at the end.
	before hostState
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// newCluster lays out a run's names and directories; nothing is started yet.
func newCluster(k8sBin string, evented bool) (*cluster, error) {
	base, err := os.MkdirTemp("", "warmpod-e2e-")
	if err != nil {
		return nil, err
	}
	// Searchable by others, like /var/lib.
	if err := os.Chmod(base, 0o711); err != nil {
		return nil, err
	}
	suffix := randomHex(6)
	c := &cluster{
		base:           base,
		logDir:         filepath.Join(base, "logs"),
		k8sBin:         k8sBin,
		suffix:         suffix,
		evented:        evented,
		wpRoot:         filepath.Join(base, "warmpod-root"),
		wpState:        filepath.Join(base, "warmpod-state"),
		wpConfig:       filepath.Join(base, "warmpod.toml"),
		bridge:         "wpe2e" + suffix,
		chainPrefix:    "WPE2E" + strings.ToUpper(suffix),
		wpCgroupParent: "/warmpod-e2e-" + suffix + "-default",
		kubeCgroupRoot: "/warmpod-e2e-" + suffix,
		kubeletRoot:    filepath.Join(base, "kubelet"),
		podLogs:        filepath.Join(base, "pod-logs"),
		staticPods:     filepath.Join(base, "manifests"),
	}
	c.wpSocket = filepath.Join(c.wpState, "warmpod.sock")
	for _, d := range []string{c.logDir, c.kubeletRoot, c.podLogs, c.staticPods, filepath.Join(base, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, err
		}
	}
	return c, nil
}

// start brings the cluster up: registry, warmpod, etcd, API server, controller manager, scheduler and
// kubelet, and waits for the node to be Ready.
func (c *cluster) start(ctx context.Context) error {
	var err error
	if c.before, err = c.hostState(); err != nil {
		return fmt.Errorf("host state before the run: %w", err)
	}
	if c.subnet, err = freeSubnet(); err != nil {
		return err
	}
	ports, err := freePorts(7)
	if err != nil {
		return err
	}
	c.etcdPort, c.etcdPeerPort, c.apiPort, c.cmPort, c.schedPort, c.kubeletPort, c.kubeletHealthz =
		ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]
	if c.pki, err = newPKI(filepath.Join(c.base, "pki"), []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	fmt.Printf("e2e run: dir %s, bridge %s, subnet %s, chains %s-*, cgroups %s, API server https://127.0.0.1:%d, evented PLEG %v\n",
		c.base, c.bridge, c.subnet, c.chainPrefix, c.kubeCgroupRoot, c.apiPort, c.evented)
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"registry", c.startRegistry},
		{"warmpod", c.startWarmpod},
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"kube-controller-manager", c.startControllerManager},
		{"kube-scheduler", c.startScheduler},
		{"kubelet", c.startKubelet},
		{"node ready", c.waitNodeReady},
	}
	if os.Getenv("E2E_CONTROL_PLANE_ONLY") != "" {
		// For working on the harness while the host-wide lock is busy: etcd, the API server, the controller
		// manager and the scheduler touch nothing host-wide (loopback ports and the run's directory).
		steps = slices.DeleteFunc(steps, func(s struct {
			name string
			fn   func(context.Context) error
		}) bool {
			return s.name == "warmpod" || s.name == "kubelet" || s.name == "node ready"
		})
	}
	for _, s := range steps {
		t0 := time.Now()
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Printf("e2e run: %s up in %s\n", s.name, time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

func (c *cluster) logPath(name string) string { return filepath.Join(c.logDir, name+".log") }

func (c *cluster) startRegistry(context.Context) error {
	var err error
	if c.reg, err = testimages.StartRegistry(); err != nil {
		return err
	}
	busybox, err := testimages.Busybox()
	if err != nil {
		return err
	}
	for ref, img := range map[string]v1.Image{
		"library/busybox:latest": busybox,
		"library/busybox:stable": busybox,
	} {
		if _, err := c.reg.Push(ref, img); err != nil {
			return err
		}
	}
	return nil
}

// buildWarmpod compiles the daemon from the repository this module sits in.
// $E2E_WARMPOD_BIN names a prebuilt daemon instead (another revision, for comparisons).
func (c *cluster) buildWarmpod() error {
	if bin := os.Getenv("E2E_WARMPOD_BIN"); bin != "" {
		c.wpBin = bin
		return nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	c.wpBin = filepath.Join(c.base, "bin", "warmpod")
	cmd := exec.Command(goBin, "build", "-tags", "seccomp", "-o", c.wpBin, "./cmd/warmpod")
	cmd.Dir = "../.." // the repository root, warmpod's own module
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build warmpod: %w\n%s", err, out)
	}
	return nil
}

func (c *cluster) startWarmpod(ctx context.Context) error {
	if err := c.buildWarmpod(); err != nil {
		return err
	}
	cfg := fmt.Sprintf("[registry]\ninsecure = [%q]\n\n[registry.mirrors]\n\"docker.io\" = [\"http://%s\"]\n", c.reg.Addr(), c.reg.Addr())
	if err := os.WriteFile(c.wpConfig, []byte(cfg), 0o644); err != nil {
		return err
	}
	var err error
	c.wp, err = startProc("warmpod", c.logPath("warmpod"), c.wpBin,
		"--config", c.wpConfig,
		"--root", c.wpRoot,
		"--state", c.wpState,
		"--socket", c.wpSocket,
		"--log-level", "debug",
		"--network-bridge", c.bridge,
		"--network-subnet", c.subnet,
		"--network-chain-prefix", c.chainPrefix,
		"--cgroup-parent", c.wpCgroupParent,
	)
	if err != nil {
		return err
	}
	if c.conn, err = grpc.NewClient("unix://"+c.wpSocket, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	c.rt = runtimeapi.NewRuntimeServiceClient(c.conn)
	// Status sets the pod network up (bridge, gateway address, chains): the kubelet's node IP is the
	// gateway's, as the kubelet refuses a loopback node IP.
	return c.poll(ctx, c.wp, time.Minute, func() error {
		st, err := c.rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err != nil {
			return err
		}
		for _, cond := range st.Status.GetConditions() {
			if !cond.Status {
				return fmt.Errorf("warmpod %s: %s: %s", cond.Type, cond.Reason, cond.Message)
			}
		}
		return nil
	})
}

// nodeIP is the pod network's gateway address on the run's bridge: a local address of the host that no
// one outside reaches.
func (c *cluster) nodeIP() string {
	p := netip.MustParsePrefix(c.subnet)
	return p.Masked().Addr().Next().String()
}

func (c *cluster) startEtcd(ctx context.Context) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.etcdPeerPort)
	var err error
	c.etcd, err = startProc("etcd", c.logPath("etcd"), filepath.Join(c.k8sBin, "etcd"),
		"--name", "e2e",
		"--data-dir", filepath.Join(c.base, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "e2e="+peer,
		// A throwaway store: durability buys nothing and fsyncs cost the shared disk.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	)
	if err != nil {
		return err
	}
	return c.poll(ctx, c.etcd, time.Minute, func() error { return httpGet(ctx, client+"/health", nil) })
}

func (c *cluster) startAPIServer(ctx context.Context) error {
	var err error
	c.apiserver, err = startProc("kube-apiserver", c.logPath("kube-apiserver"), filepath.Join(c.k8sBin, "kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		// The "kubernetes" service's endpoint would be the loopback address, which the reconciler refuses;
		// nothing reaches the API server through the service anyway.
		"--endpoint-reconciler-type", "none",
		"--secure-port", itoa(c.apiPort),
		"--cert-dir", filepath.Join(c.base, "apiserver-certs"),
		"--tls-cert-file", c.pki.serverCert, "--tls-private-key-file", c.pki.serverKey,
		"--client-ca-file", c.pki.caCert,
		"--kubelet-client-certificate", c.pki.clientCert, "--kubelet-client-key", c.pki.clientKey,
		"--service-account-key-file", c.pki.saPub,
		"--service-account-signing-key-file", c.pki.saKey,
		"--service-account-issuer", "https://kubernetes.default.svc",
		// No service of this cluster is ever reached: there is no kube-proxy.
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--authorization-mode", "AlwaysAllow",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	c.restCfg = &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", c.apiPort),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: c.pki.caCert, CertFile: c.pki.clientCert, KeyFile: c.pki.clientKey,
		},
		QPS: 100, Burst: 200,
	}
	if c.cs, err = kubernetes.NewForConfig(c.restCfg); err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	return c.poll(ctx, c.apiserver, 2*time.Minute, func() error {
		body, err := c.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	})
}

// writeKubeconfig writes the kubeconfig every component uses: the admin client certificate.
func (c *cluster) writeKubeconfig() error {
	cfg := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "e2e",
		"clusters": []any{map[string]any{"name": "e2e", "cluster": map[string]any{
			"server": c.restCfg.Host, "certificate-authority": c.pki.caCert}}},
		"users": []any{map[string]any{"name": "admin", "user": map[string]any{
			"client-certificate": c.pki.clientCert, "client-key": c.pki.clientKey}}},
		"contexts": []any{map[string]any{"name": "e2e", "context": map[string]any{"cluster": "e2e", "user": "admin"}}},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(c.kubeconfig(), data, 0o600)
}

func (c *cluster) kubeconfig() string { return filepath.Join(c.base, "kubeconfig") }

func (c *cluster) startControllerManager(ctx context.Context) error {
	var err error
	c.cm, err = startProc("kube-controller-manager", c.logPath("kube-controller-manager"), filepath.Join(c.k8sBin, "kube-controller-manager"),
		"--kubeconfig", c.kubeconfig(),
		"--authentication-kubeconfig", c.kubeconfig(),
		"--authorization-kubeconfig", c.kubeconfig(),
		"--bind-address", "127.0.0.1",
		"--secure-port", itoa(c.cmPort),
		"--cert-dir", filepath.Join(c.base, "cm-certs"),
		"--service-account-private-key-file", c.pki.saKey,
		"--root-ca-file", c.pki.caCert,
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	// Ready when the service account controllers made the default namespace's account: pods need it.
	return c.poll(ctx, c.cm, 2*time.Minute, func() error {
		_, err := c.cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

func (c *cluster) startScheduler(ctx context.Context) error {
	var err error
	c.sched, err = startProc("kube-scheduler", c.logPath("kube-scheduler"), filepath.Join(c.k8sBin, "kube-scheduler"),
		"--kubeconfig", c.kubeconfig(),
		"--authentication-kubeconfig", c.kubeconfig(),
		"--authorization-kubeconfig", c.kubeconfig(),
		"--bind-address", "127.0.0.1",
		"--secure-port", itoa(c.schedPort),
		"--cert-dir", filepath.Join(c.base, "sched-certs"),
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	return c.poll(ctx, c.sched, time.Minute, func() error {
		return httpGet(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.schedPort), nil)
	})
}

// kubeletConfig is the KubeletConfiguration of the run: loopback only, cgroupfs (the cgroup v1 host and
// warmpod agree on it), everything host-wide it would touch moved under the run's directory.
func (c *cluster) kubeletConfig() map[string]any {
	gates := map[string]bool{}
	if c.evented {
		gates["EventedPLEG"] = true
	}
	return map[string]any{
		"kind":                     "KubeletConfiguration",
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"address":                  "127.0.0.1",
		"port":                     c.kubeletPort,
		"readOnlyPort":             0,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              c.kubeletHealthz,
		"containerRuntimeEndpoint": "unix://" + c.wpSocket,
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               c.kubeCgroupRoot,
		"cgroupsPerQOS":            true,
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"staticPodPath":            c.staticPods,
		"fileCheckFrequency":       "1s",
		"podLogsDir":               c.podLogs,
		"volumePluginDir":          filepath.Join(c.kubeletRoot, "volume-plugins"),
		"featureGates":             gates,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": false},
			"x509":      map[string]any{"clientCAFile": c.pki.caCert},
		},
		"authorization": map[string]any{"mode": "AlwaysAllow"},
		// No KUBE-IPTABLES-HINT chain: the run leaves iptables as it found it.
		"makeIPTablesUtilChains": false,
		"serializeImagePulls":    false,
		// Other work shares the disk; the run must not be evicted or tainted because of it.
		"evictionHard": map[string]string{
			"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%",
		},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"registerWithTaints": []any{map[string]string{
			"key": nodeTaint, "value": labelValue, "effect": "NoSchedule",
		}},
		"resolvConf": "/etc/resolv.conf",
	}
}

func (c *cluster) startKubelet(ctx context.Context) error {
	if err := c.makeKubeCgroupRoot(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c.kubeletConfig(), "", "  ")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(c.base, "kubelet-config.json")
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		return err
	}
	return c.runKubelet(ctx, cfgPath)
}

func (c *cluster) runKubelet(ctx context.Context, cfgPath string) error {
	var err error
	c.kubelet, err = startProc("kubelet", c.logPath("kubelet"), filepath.Join(c.k8sBin, "kubelet"),
		"--config", cfgPath,
		"--kubeconfig", c.kubeconfig(),
		"--root-dir", c.kubeletRoot,
		"--cert-dir", filepath.Join(c.kubeletRoot, "pki"),
		"--hostname-override", nodeName,
		"--node-ip", c.nodeIP(),
		"--node-labels", nodeLabel+"="+labelValue,
		"--v=4",
	)
	if err != nil {
		return err
	}
	return c.poll(ctx, c.kubelet, 2*time.Minute, func() error {
		return httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", c.kubeletHealthz), nil)
	})
}

func (c *cluster) waitNodeReady(ctx context.Context) error {
	return c.poll(ctx, c.kubelet, 3*time.Minute, func() error {
		n, err := c.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node not ready: %s: %s", cond.Reason, cond.Message)
			}
		}
		return errors.New("node has no Ready condition yet")
	})
}

// poll calls fn until it succeeds, p exits, ctx ends or timeout passes.
func (c *cluster) poll(ctx context.Context, p *proc, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = fn(); last == nil {
			return nil
		}
		if p != nil && p.pid() == 0 {
			return fmt.Errorf("%s exited: %v\nlog tail:\n%s", p.name, last, p.tail(6000))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			msg := ""
			if p != nil {
				msg = "\nlog tail:\n" + p.tail(6000)
			}
			return fmt.Errorf("not ready after %s: %v%s", timeout, last, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freeSubnet picks a /24 in 10.200.0.0-10.249.255.0 that no route of the host overlaps.
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
		_, _ = rand.Read(b)
		cand := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%50, b[1]))
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand.String(), nil
		}
	}
	return "", errors.New("no free /24 in 10.200.0.0/13 for the pod network")
}
