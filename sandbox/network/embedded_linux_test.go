package network

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goiptables "github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/warmpod/warmpod/internal/testutil"
	"github.com/warmpod/warmpod/sandbox/netns"
)

// These tests build a real bridge, veths, namespaces and iptables rules.
// Every name is unique to the test (bridge, subnet, chain prefix), so they
// can run beside a real daemon, and everything is removed at the end.

func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t, "it creates bridges, namespaces and iptables rules")
	if _, err := goiptables.New(); err != nil {
		t.Skipf("iptables unusable: %v", err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeSubnet picks a /24 in 10.200.0.0/13 that no host address or route
// overlaps.
func freeSubnet(t testing.TB) string {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		n, _ := rand.Int(rand.Reader, big.NewInt(8*256))
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 200+n.Int64()/256, n.Int64()%256))
		clash := false
		for _, r := range routes {
			if r.Dst != nil && r.Dst.String() != "0.0.0.0/0" && (r.Dst.Contains(cand.IP) || cand.Contains(r.Dst.IP)) {
				clash = true
			}
		}
		if !clash {
			return cand.String()
		}
	}
	t.Fatal("no free test subnet")
	return ""
}

type realNet struct {
	e   *Embedded
	cfg EmbeddedConfig
}

func newRealNet(t testing.TB) *realNet {
	requireRoot(t)
	cfg := EmbeddedConfig{
		Bridge:      "wpt" + randHex(4),
		Subnet:      freeSubnet(t),
		StateDir:    filepath.Join(t.TempDir(), "network"),
		ChainPrefix: "WPT" + strings.ToUpper(randHex(3)),
	}
	e, err := NewEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// net.ipv4.ip_forward=1 stays set: it is host-wide, a warmpod daemon
	// running beside the tests needs it too, and turning it off under that
	// daemon would cut its pods off.
	t.Cleanup(func() {
		if err := e.Uninstall(); err != nil {
			t.Errorf("uninstall test network: %v", err)
		}
	})
	if err := e.Ready(); err != nil {
		t.Fatal(err)
	}
	return &realNet{e: e, cfg: cfg}
}

// newPodNS pins a fresh network namespace, removed when the test ends.
func newPodNS(t testing.TB) string {
	dir := filepath.Join(t.TempDir(), "ns")
	p, err := netns.Create(dir, netns.Options{Net: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(dir); err != nil {
			t.Errorf("remove netns: %v", err)
		}
	})
	return p.Net
}

// serve listens on TCP port inside the pod and answers every connection
// with name. The socket keeps to the pod's namespace whatever thread
// accepts on it.
func serve(t testing.TB, nsPath string, port int, name string) {
	var ln net.Listener
	err := netns.Do(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name+"\n")
			c.Close()
		}
	}()
}

// ask connects to addr and returns the first line it gets.
func ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func askFrom(nsPath, addr string) (string, error) {
	var got string
	err := netns.Do(nsPath, func() error {
		var err error
		got, err = ask(addr)
		return err
	})
	return got, err
}

// setupPair sets pods pa and pb up in network p and tears both down when
// the test ends.
func setupPair(t *testing.T, p Plugin, pa, pb Pod) (a, b Result) {
	t.Helper()
	a, err := p.Setup(ctx, pa)
	if err != nil {
		t.Fatal(err)
	}
	b, err = p.Setup(ctx, pb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pod := range []Pod{pa, pb} {
			if err := p.Teardown(ctx, pod); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
	})
	return a, b
}

// checkPairReach serves port 8080 in both pods of a pair, answering "a"
// and "b", and has each pod ask the other.
func checkPairReach(t *testing.T, nsA, nsB string, a, b Result) {
	t.Helper()
	serve(t, nsA, 8080, "a")
	serve(t, nsB, 8080, "b")
	for _, tc := range []struct{ from, to, want string }{
		{nsA, net.JoinHostPort(b.IPs[0].String(), "8080"), "b"},
		{nsB, net.JoinHostPort(a.IPs[0].String(), "8080"), "a"},
	} {
		got, err := askFrom(tc.from, tc.to)
		if err != nil || got != tc.want {
			t.Errorf("pod asking %s got %q, %v; want %q", tc.to, got, err, tc.want)
		}
	}
}

func TestRealPodsReachEachOther(t *testing.T) {
	n := newRealNet(t)
	nsA, nsB := newPodNS(t), newPodNS(t)
	pa, pb := Pod{ID: "a" + randHex(8), NetNS: nsA}, Pod{ID: "b" + randHex(8), NetNS: nsB}
	a, b := setupPair(t, n.e, pa, pb)
	if a.IPs[0].Equal(b.IPs[0]) {
		t.Fatalf("both pods got %s", a.IPs[0])
	}
	checkPodSide(t, nsA, a)
	checkPairReach(t, nsA, nsB, a, b)
	// The node reaches pods directly too.
	if got, err := ask(net.JoinHostPort(a.IPs[0].String(), "8080")); err != nil || got != "a" {
		t.Errorf("node asking pod a got %q, %v", got, err)
	}
}

// checkPodSide looks inside the pod: eth0 up with the address, the default
// route via the gateway, lo up.
func checkPodSide(t *testing.T, nsPath string, res Result) {
	t.Helper()
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Error("eth0 down")
	}
	addrs, err := h.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || !addrs[0].IP.Equal(res.IPs[0]) {
		t.Errorf("eth0 addresses = %v, %v; want %s", addrs, err, res.IPs[0])
	}
	routes, err := h.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(res.Gateway) {
			found = true
		}
	}
	if !found {
		t.Errorf("no default route via %s in %v", res.Gateway, routes)
	}
	lo, err := h.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo not up: %v", err)
	}
}

// nodeIP returns the source address the node uses toward its default
// route: a host port must answer on it.
func nodeIP(t *testing.T) string {
	routes, err := netlink.RouteGet(net.ParseIP("192.0.2.200"))
	if err != nil || len(routes) == 0 || routes[0].Src == nil {
		t.Skipf("no routable node address: %v", err)
	}
	return routes[0].Src.String()
}

func TestRealHostPort(t *testing.T) {
	n := newRealNet(t)
	nsA := newPodNS(t)
	hostPort := 20000 + int(randByte())*40 + int(randByte())%40
	p := Pod{ID: "hp" + randHex(8), NetNS: nsA, PortMappings: []PortMapping{
		{Protocol: "tcp", ContainerPort: 8080, HostPort: int32(hostPort)},
	}}
	res, err := n.e.Setup(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, nsA, 8080, "pod")
	node := nodeIP(t)
	for _, addr := range []string{
		net.JoinHostPort("127.0.0.1", fmt.Sprint(hostPort)),
		net.JoinHostPort(node, fmt.Sprint(hostPort)),
	} {
		if got, err := ask(addr); err != nil || got != "pod" {
			t.Errorf("node asking %s got %q, %v", addr, got, err)
		}
	}
	// Hairpin: the pod reaches its own host port through the node.
	if got, err := askFrom(nsA, net.JoinHostPort(node, fmt.Sprint(hostPort))); err != nil || got != "pod" {
		t.Errorf("pod asking its own host port got %q, %v", got, err)
	}
	// A second pod may not take the port.
	if _, err := n.e.Setup(ctx, Pod{ID: "hq" + randHex(8), NetNS: newPodNS(t), PortMappings: p.PortMappings}); !errors.Is(err, ErrPortConflict) {
		t.Fatalf("second pod on the same host port: %v", err)
	}

	if err := n.e.Teardown(ctx, p); err != nil {
		t.Fatal(err)
	}
	ipt, _ := goiptables.New()
	if ok, _ := ipt.ChainExists("nat", n.e.fw.podChain(p.ID)); ok {
		t.Error("host port chain left after Teardown")
	}
	if _, err := ask(net.JoinHostPort("127.0.0.1", fmt.Sprint(hostPort))); err == nil {
		t.Errorf("host port %d still answers after Teardown (pod IP %s)", hostPort, res.IPs[0])
	}
}

// Issue 12 (CVE-2020-8558): route_localnet on the bridge, which host ports reached as 127.0.0.1 need,
// must not let a pod reach a service bound to the node's loopback. The pod here routes 127.0.0.0/8 to
// its gateway, which root in a pod's network namespace (or CAP_NET_RAW, with crafted packets) can do.
func TestRealPodCannotReachNodeLoopback(t *testing.T) {
	n := newRealNet(t)
	nsA := newPodNS(t)
	pod := Pod{ID: "lo" + randHex(8), NetNS: nsA}
	res, err := n.e.Setup(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.e.Teardown(ctx, pod); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "node loopback\n")
			c.Close()
		}
	}()
	if got, err := ask(ln.Addr().String()); err != nil || got != "node loopback" {
		t.Fatalf("the node itself cannot reach its listener: %q, %v", got, err)
	}
	err = netns.Do(nsA, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		// The pod's own loopback address goes (and with it its local
		// routes), and 127.0.0.0/8 leaves through eth0 to the node.
		loAddr, err := netlink.ParseAddr("127.0.0.1/8")
		if err != nil {
			return err
		}
		if err := netlink.AddrDel(lo, loAddr); err != nil {
			return fmt.Errorf("delete the pod's loopback address: %w", err)
		}
		_, loNet, _ := net.ParseCIDR("127.0.0.0/8")
		for _, dev := range []string{"all", "eth0"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/route_localnet", []byte("1"), 0); err != nil {
				return err
			}
		}
		if err := netlink.RouteAdd(&netlink.Route{Dst: loNet, Gw: res.Gateway, LinkIndex: eth0.Attrs().Index}); err != nil {
			return fmt.Errorf("route 127.0.0.0/8 to the node: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := askFrom(nsA, ln.Addr().String()); err == nil {
		t.Fatalf("pod reached the node's loopback listener at %s: %q", ln.Addr(), got)
	}
	// Without the drop rule the pod gets through: the route above does reach
	// the node, and the refusal was the rule's.
	var jump []string
	for _, r := range n.e.fw.baseRules() {
		if r.table == "filter" && r.chain == "INPUT" {
			jump = r.spec
		}
	}
	if err := n.e.fw.ipt.DeleteIfExists("filter", "INPUT", jump...); err != nil {
		t.Fatal(err)
	}
	if got, err := askFrom(nsA, ln.Addr().String()); err != nil || got != "node loopback" {
		t.Fatalf("without the drop rule the pod does not reach the node's loopback either (%q, %v): the check above proves nothing", got, err)
	}
}

func randByte() byte {
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	return b[0]
}

func TestRealRestartAndTeardown(t *testing.T) {
	n := newRealNet(t)
	nsA := newPodNS(t)
	p := Pod{ID: "r" + randHex(8), NetNS: nsA, PortMappings: []PortMapping{{ContainerPort: 80, HostPort: int32(30000 + int(randByte()))}}}
	first, err := n.e.Setup(ctx, p)
	if err != nil {
		t.Fatal(err)
	}

	e2, err := NewEmbedded(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := e2.Status(ctx, p)
	if err != nil || !st.IPs[0].Equal(first.IPs[0]) {
		t.Fatalf("Status after restart = %+v, %v; want %s", st, err, first.IPs[0])
	}
	again, err := e2.Setup(ctx, p)
	if err != nil || !again.IPs[0].Equal(first.IPs[0]) {
		t.Fatalf("Setup after restart = %+v, %v", again, err)
	}
	other, err := e2.Setup(ctx, Pod{ID: "s" + randHex(8), NetNS: newPodNS(t)})
	if err != nil {
		t.Fatal(err)
	}
	if other.IPs[0].Equal(first.IPs[0]) {
		t.Fatalf("restarted network handed out %s twice", first.IPs[0])
	}

	if err := e2.Teardown(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(vethName(p.ID)); err == nil {
		t.Error("veth left after Teardown")
	}
	if err := e2.Teardown(ctx, p); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
}

// Teardown must work when the sandbox's netns is already gone (the kernel
// then deletes the veth pair by itself, possibly a little later).
func TestRealTeardownAfterNetNSGone(t *testing.T) {
	n := newRealNet(t)
	dir := filepath.Join(t.TempDir(), "ns")
	paths, err := netns.Create(dir, netns.Options{Net: true})
	if err != nil {
		t.Fatal(err)
	}
	p := Pod{ID: "g" + randHex(8), NetNS: paths.Net}
	if _, err := n.e.Setup(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := netns.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := n.e.Teardown(ctx, p); err != nil {
		t.Fatalf("Teardown without netns: %v", err)
	}
	if _, err := n.e.Status(ctx, p); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Status = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(n.cfg.StateDir, "ipam")); err != nil {
		t.Fatal(err)
	}
}

// Uninstall leaves no bridge and no chain behind.
func TestRealUninstall(t *testing.T) {
	n := newRealNet(t)
	if _, err := n.e.Setup(ctx, Pod{ID: "u" + randHex(8), NetNS: newPodNS(t),
		PortMappings: []PortMapping{{ContainerPort: 1, HostPort: int32(31000 + int(randByte()))}}}); err != nil {
		t.Fatal(err)
	}
	if err := n.e.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(n.cfg.Bridge); err == nil {
		t.Error("bridge left")
	}
	ipt, _ := goiptables.New()
	for _, table := range []string{"nat", "filter"} {
		chains, err := ipt.ListChains(table)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chains {
			if strings.HasPrefix(c, n.cfg.ChainPrefix) {
				t.Errorf("chain %s/%s left", table, c)
			}
		}
		for _, c := range []string{"PREROUTING", "OUTPUT", "POSTROUTING", "FORWARD"} {
			rules, _ := ipt.List(table, c)
			for _, r := range rules {
				if strings.Contains(r, n.cfg.ChainPrefix) {
					t.Errorf("rule left in %s/%s: %s", table, c, r)
				}
			}
		}
	}
}

func BenchmarkRealSetupTeardown(b *testing.B) {
	n := newRealNet(b)
	ns := newPodNS(b)
	for i := 0; b.Loop(); i++ {
		p := Pod{ID: fmt.Sprintf("bench%d", i), NetNS: ns}
		if _, err := n.e.Setup(ctx, p); err != nil {
			b.Fatal(err)
		}
		if err := n.e.Teardown(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}
