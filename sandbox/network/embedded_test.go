package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

type fixture struct {
	e     *Embedded
	links *fakeLinks
	ipt   *fakeIPT
	dir   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{links: newFakeLinks(), ipt: newFakeIPT(), dir: t.TempDir()}
	f.e = f.open(t)
	return f
}

// open makes a new Embedded on the fixture's state and fakes, as a daemon
// restart would.
func (f *fixture) open(t *testing.T) *Embedded {
	t.Helper()
	e, err := newEmbedded(EmbeddedConfig{StateDir: f.dir}, f.links, f.ipt)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func pod(id string, pms ...PortMapping) Pod {
	return Pod{ID: id, Name: "name-" + id, Namespace: "default", UID: "uid-" + id, NetNS: "/run/netns/" + id, PortMappings: pms}
}

func ip(r Result) string {
	if len(r.IPs) == 0 {
		return ""
	}
	return r.IPs[0].String()
}

var ctx = context.Background()

func TestSetupTeardown(t *testing.T) {
	f := newFixture(t)
	p := pod("a", PortMapping{Protocol: "TCP", ContainerPort: 80, HostPort: 8080}, PortMapping{ContainerPort: 9000})
	res, err := f.e.Setup(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if ip(res) != "10.88.0.2" || res.Gateway.String() != "10.88.0.1" || res.Interface != "eth0" {
		t.Fatalf("result = %+v", res)
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" || !res.Routes[0].GW.Equal(net.ParseIP("10.88.0.1")) {
		t.Errorf("routes = %+v", res.Routes)
	}
	veth := vethName("a")
	if len(veth) > 15 {
		t.Errorf("veth name %q longer than IFNAMSIZ-1", veth)
	}
	l := f.links.podLink[veth]
	if l.NetNS != p.NetNS || l.Addr.String() != "10.88.0.2/16" || l.Gateway.String() != "10.88.0.1" ||
		l.MTU != 1400 || l.Bridge != DefaultBridge || l.IfName != "eth0" {
		t.Errorf("pod link = %+v", l)
	}
	if !f.links.gws[gateway(mustPrefix(t, DefaultSubnet))] {
		t.Errorf("gateway not on bridge: %v", f.links.gws)
	}
	if f.links.sysctls["net/ipv4/ip_forward"] != "1" || f.links.sysctls["net/ipv4/conf/warmpod0/route_localnet"] != "1" {
		t.Errorf("sysctls = %v", f.links.sysctls)
	}
	chain := f.e.fw.podChain("a")
	if got := f.ipt.rules("nat", chain); len(got) != 1 ||
		got[0] != "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.2:80" {
		t.Errorf("pod chain = %q (the unexposed port must not be mapped)", got)
	}
	if got := f.ipt.rules("nat", "WARMPOD-HOSTPORTS"); !slices.Contains(got, "-m comment --comment pod a -j "+chain) {
		t.Errorf("hostports chain = %q", got)
	}

	again, err := f.e.Setup(ctx, p)
	if err != nil || ip(again) != ip(res) {
		t.Fatalf("second Setup = %+v, %v", again, err)
	}
	if n := f.links.count("addPodLink"); n != 1 {
		t.Errorf("second Setup made the veth again (%d addPodLink calls)", n)
	}
	st, err := f.e.Status(ctx, p)
	if err != nil || ip(st) != ip(res) {
		t.Fatalf("Status = %+v, %v", st, err)
	}

	if err := f.e.Teardown(ctx, p); err != nil {
		t.Fatal(err)
	}
	if f.links.links[veth] || f.ipt.hasChain("nat", chain) || len(f.ipt.rules("nat", "WARMPOD-HOSTPORTS")) != 0 {
		t.Errorf("left after Teardown: links %v, chain %v", f.links.links, f.ipt.userChains())
	}
	if _, err := os.Stat(filepath.Join(f.dir, "ipam", "10.88.0.2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("IP still allocated after Teardown: %v", err)
	}
	if _, err := f.e.Status(ctx, p); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status after Teardown = %v, want ErrNotFound", err)
	}
	if err := f.e.Teardown(ctx, p); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
}

func mustPrefix(t *testing.T, s string) (p netip.Prefix) {
	t.Helper()
	p, err := validSubnet(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A pod that never had a network is torn down without running iptables
// (each call is an exec) and without error.
func TestTeardownUnknownPod(t *testing.T) {
	f := newFixture(t)
	before := f.ipt.callCount()
	if err := f.e.Teardown(ctx, Pod{ID: "never"}); err != nil {
		t.Fatal(err)
	}
	if f.ipt.callCount() != before {
		t.Errorf("Teardown of an unknown pod ran iptables")
	}
}

func TestRestartKeepsAllocations(t *testing.T) {
	f := newFixture(t)
	a, err := f.e.Setup(ctx, pod("a", PortMapping{ContainerPort: 80, HostPort: 8080}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.e.Setup(ctx, pod("b"))
	if err != nil {
		t.Fatal(err)
	}

	e2 := f.open(t)
	for _, tc := range []struct {
		id   string
		want Result
	}{{"a", a}, {"b", b}} {
		got, err := e2.Status(ctx, pod(tc.id))
		if err != nil || ip(got) != ip(tc.want) {
			t.Errorf("Status(%s) after restart = %+v, %v; want %s", tc.id, got, err, ip(tc.want))
		}
		again, err := e2.Setup(ctx, pod(tc.id))
		if err != nil || ip(again) != ip(tc.want) {
			t.Errorf("Setup(%s) after restart = %+v, %v; want %s", tc.id, again, err, ip(tc.want))
		}
	}
	if n := f.links.count("addPodLink"); n != 2 {
		t.Errorf("restart re-created veths: %d addPodLink calls", n)
	}
	c, err := e2.Setup(ctx, pod("c"))
	if err != nil {
		t.Fatal(err)
	}
	if ip(c) == ip(a) || ip(c) == ip(b) {
		t.Fatalf("restarted allocator handed out %s twice", ip(c))
	}
	if _, err := e2.Setup(ctx, pod("d", PortMapping{ContainerPort: 1, HostPort: 8080})); !errors.Is(err, ErrPortConflict) {
		t.Fatalf("host port of a pod set up before the restart was handed out again: %v", err)
	}
	// Teardown after the restart removes what the first instance made.
	if err := e2.Teardown(ctx, pod("a")); err != nil {
		t.Fatal(err)
	}
	if f.ipt.hasChain("nat", e2.fw.podChain("a")) || f.links.links[vethName("a")] {
		t.Errorf("Teardown after restart left pod a's chain or veth")
	}
}

// A Setup redone because the veth vanished (or a crash interrupted it)
// takes the new request's ports and drops the old ones.
func TestSetupRedoReplacesPorts(t *testing.T) {
	f := newFixture(t)
	first, err := f.e.Setup(ctx, pod("a", PortMapping{ContainerPort: 80, HostPort: 8080}))
	if err != nil {
		t.Fatal(err)
	}
	_ = f.links.delLink(vethName("a"))
	again, err := f.e.Setup(ctx, pod("a"))
	if err != nil || ip(again) != ip(first) {
		t.Fatalf("redo = %+v, %v; want the same IP %s", again, err, ip(first))
	}
	if f.ipt.hasChain("nat", f.e.fw.podChain("a")) {
		t.Error("old host port chain left")
	}
	if _, err := f.e.Setup(ctx, pod("b", PortMapping{ContainerPort: 80, HostPort: 8080})); err != nil {
		t.Errorf("old host port still reserved: %v", err)
	}
}

func TestPortConflicts(t *testing.T) {
	held := PortMapping{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}
	for _, tc := range []struct {
		name     string
		pm       PortMapping
		conflict bool
	}{
		{"same port", PortMapping{ContainerPort: 81, HostPort: 8080}, true},
		{"specific IP under wildcard", PortMapping{ContainerPort: 81, HostPort: 8080, HostIP: "127.0.0.1"}, true},
		{"other protocol", PortMapping{Protocol: "udp", ContainerPort: 81, HostPort: 8080}, false},
		{"other port", PortMapping{ContainerPort: 81, HostPort: 8081}, false},
		{"unexposed", PortMapping{ContainerPort: 80}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if _, err := f.e.Setup(ctx, pod("a", held)); err != nil {
				t.Fatal(err)
			}
			_, err := f.e.Setup(ctx, pod("b", tc.pm))
			if !tc.conflict {
				if err != nil {
					t.Fatalf("Setup = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrPortConflict) || !strings.Contains(err.Error(), `"a"`) {
				t.Fatalf("Setup = %v, want ErrPortConflict naming pod a", err)
			}
			assertNothingLeft(t, f, "b")
		})
	}
	f := newFixture(t)
	if _, err := f.e.Setup(ctx, pod("a", PortMapping{ContainerPort: 80, HostPort: 8080, HostIP: "10.0.0.1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.Setup(ctx, pod("b", PortMapping{ContainerPort: 80, HostPort: 8080, HostIP: "10.0.0.2"})); err != nil {
		t.Fatalf("same port on another host IP: %v", err)
	}
}

// assertNothingLeft checks that a failed Setup of id undid everything.
func assertNothingLeft(t *testing.T, f *fixture, id string) {
	t.Helper()
	if f.links.links[vethName(id)] {
		t.Errorf("veth of %s left", id)
	}
	if f.ipt.hasChain("nat", f.e.fw.podChain(id)) {
		t.Errorf("host port chain of %s left", id)
	}
	for _, r := range f.ipt.rules("nat", f.e.fw.hostportsChain()) {
		if strings.Contains(r, "pod "+id+" ") {
			t.Errorf("jump for %s left: %s", id, r)
		}
	}
	if _, err := f.e.Status(ctx, pod(id)); !errors.Is(err, ErrNotFound) {
		t.Errorf("state of %s left: %v", id, err)
	}
	f.e.ipam.mu.Lock()
	n := len(f.e.ipam.byPod[id])
	f.e.ipam.mu.Unlock()
	if n != 0 {
		t.Errorf("IP of %s left allocated", id)
	}
	f.e.portsMu.Lock()
	defer f.e.portsMu.Unlock()
	for k, owner := range f.e.ports {
		if owner == id {
			t.Errorf("host port %s of %s left reserved", k, id)
		}
	}
}

func TestSetupRollsBack(t *testing.T) {
	pm := PortMapping{ContainerPort: 80, HostPort: 8080}
	for _, tc := range []struct {
		name   string
		inject func(f *fixture)
	}{
		{"veth fails", func(f *fixture) { f.links.failAdd = errors.New("injected") }},
		{"DNAT rule fails", func(f *fixture) { f.ipt.failOn = "Append nat " + f.e.fw.podChain("a") }},
		{"jump fails", func(f *fixture) { f.ipt.failOn = "AppendUnique nat WARMPOD-HOSTPORTS -m comment --comment pod a" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if err := f.e.Ready(); err != nil {
				t.Fatal(err)
			}
			tc.inject(f)
			if _, err := f.e.Setup(ctx, pod("a", pm)); err == nil {
				t.Fatal("Setup succeeded despite the injected failure")
			}
			assertNothingLeft(t, f, "a")
			// The port and the pod ID are free again.
			f.links.failAdd = nil
			if _, err := f.e.Setup(ctx, pod("b", pm)); err != nil {
				t.Fatalf("port not released: %v", err)
			}
			if _, err := f.e.Setup(ctx, pod("a")); err != nil {
				t.Fatalf("pod cannot be set up again: %v", err)
			}
		})
	}
}

func TestSetupValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pod     Pod
		wantArg string
	}{
		{"empty ID", Pod{NetNS: "/x"}, `""`},
		{"ID with slash", Pod{ID: "a/b", NetNS: "/x"}, "a/b"},
		{"no netns", Pod{ID: "a"}, "network namespace"},
		{"bad protocol", pod("a", PortMapping{Protocol: "icmp", ContainerPort: 1, HostPort: 1}), "icmp"},
		{"container port 0", pod("a", PortMapping{HostPort: 80}), "container port 0"},
		{"host port too big", pod("a", PortMapping{ContainerPort: 1, HostPort: 70000}), "70000"},
		{"bad host IP", pod("a", PortMapping{ContainerPort: 1, HostPort: 1, HostIP: "nope"}), "nope"},
		{"IPv6 host IP", pod("a", PortMapping{ContainerPort: 1, HostPort: 1, HostIP: "::1"}), "IPv4 only"},
		{"duplicate", pod("a", PortMapping{ContainerPort: 1, HostPort: 5}, PortMapping{ContainerPort: 2, HostPort: 5, HostIP: "0.0.0.0"}), "mapped twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.e.Setup(ctx, tc.pod)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantArg) {
				t.Fatalf("Setup = %v, want ErrInvalid naming %s", err, tc.wantArg)
			}
			if len(f.links.calls) != 0 || f.ipt.callCount() != 0 {
				t.Errorf("invalid request touched the kernel: %v", f.links.calls)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []EmbeddedConfig{
		{StateDir: ""},
		{StateDir: "relative"},
		{StateDir: dir, Bridge: "a-very-long-bridge-name"},
		{StateDir: dir, Subnet: "10.0.0.0/31"},
		{StateDir: dir, Subnet: "fd00::/64"},
		{StateDir: dir, Subnet: "nonsense"},
		{StateDir: dir, MTU: 10},
		{StateDir: dir, ChainPrefix: "lowercase"},
		{StateDir: dir, ChainPrefix: "MUCH-TOO-LONG-PREFIX"},
	} {
		if _, err := newEmbedded(cfg, newFakeLinks(), newFakeIPT()); !errors.Is(err, ErrInvalid) {
			t.Errorf("config %+v: %v, want ErrInvalid", cfg, err)
		}
	}
}

func TestUpdatePodCIDR(t *testing.T) {
	f := newFixture(t)
	a, err := f.e.Setup(ctx, pod("a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"nonsense", "fd00::/64", "10.1.0.0/31"} {
		if err := f.e.UpdatePodCIDR(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("UpdatePodCIDR(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := f.e.UpdatePodCIDR(""); err != nil {
		t.Fatal(err)
	}
	if err := f.e.UpdatePodCIDR("10.244.1.0/24,fd00:1::/64"); err != nil {
		t.Fatal(err)
	}
	b, err := f.e.Setup(ctx, pod("b"))
	if err != nil {
		t.Fatal(err)
	}
	if ip(b) != "10.244.1.2" || b.Gateway.String() != "10.244.1.1" {
		t.Fatalf("pod after UpdatePodCIDR = %+v", b)
	}
	if l := f.links.podLink[vethName("b")]; l.Addr.String() != "10.244.1.2/24" {
		t.Errorf("pod link addr = %s", l.Addr)
	}
	for _, gw := range []string{"10.88.0.1/16", "10.244.1.1/24"} {
		if !f.links.gws[mustGW(t, gw)] {
			t.Errorf("gateway %s missing on bridge", gw)
		}
	}
	post := f.ipt.rules("nat", "WARMPOD-POSTROUTING")
	for _, s := range []string{"10.88.0.0/16", "10.244.1.0/24"} {
		if !slices.Contains(post, "-s "+s+" ! -o warmpod0 ! -d 224.0.0.0/4 -j MASQUERADE") {
			t.Errorf("no masquerade for %s: %q", s, post)
		}
	}
	if got, _ := f.e.Status(ctx, pod("a")); ip(got) != ip(a) {
		t.Errorf("pod a moved to %s", ip(got))
	}

	// The new range survives a restart, and so does the old pod's gateway.
	e2 := f.open(t)
	c, err := e2.Setup(ctx, pod("c"))
	if err != nil || ip(c) != "10.244.1.3" {
		t.Fatalf("Setup after restart = %+v, %v", c, err)
	}
	if err := e2.Teardown(ctx, pod("a")); err != nil {
		t.Fatal(err)
	}
}

func mustGW(t *testing.T, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIPTablesUnavailable(t *testing.T) {
	dir := t.TempDir()
	e, err := newEmbedded(EmbeddedConfig{StateDir: dir}, newFakeLinks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.fw.unavailable = errors.New(`exec: "iptables": executable file not found in $PATH`)
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), "iptables") {
		t.Fatalf("Ready = %v, want an error about iptables", err)
	}
	if _, err := e.Setup(ctx, pod("a")); err == nil {
		t.Fatal("Setup succeeded without iptables")
	}
	if err := e.Teardown(ctx, pod("a")); err != nil {
		t.Fatalf("Teardown without iptables: %v", err)
	}
}

func TestMTU(t *testing.T) {
	f := &fixture{links: newFakeLinks(), ipt: newFakeIPT(), dir: t.TempDir()}
	e, err := newEmbedded(EmbeddedConfig{StateDir: f.dir, MTU: 9000}, f.links, f.ipt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Setup(ctx, pod("a")); err != nil {
		t.Fatal(err)
	}
	if got := f.links.podLink[vethName("a")].MTU; got != 9000 {
		t.Errorf("MTU = %d, want the configured 9000", got)
	}
}

// A bridge deleted by an operator is repaired by Ready.
func TestReadyRepairs(t *testing.T) {
	f := newFixture(t)
	if err := f.e.Ready(); err != nil {
		t.Fatal(err)
	}
	_ = f.links.delLink(DefaultBridge)
	if err := f.e.Ready(); err != nil {
		t.Fatal(err)
	}
	if !f.links.links[DefaultBridge] {
		t.Fatal("Ready did not recreate the bridge")
	}
	// A firewall flush (a firewalld reload) is repaired the same way.
	f.ipt.tables["nat"]["PREROUTING"] = nil
	if err := f.e.Ready(); err != nil {
		t.Fatal(err)
	}
	if len(f.ipt.rules("nat", "PREROUTING")) != 1 {
		t.Fatal("Ready did not restore the host port jump")
	}
}

func TestConcurrentSetup(t *testing.T) {
	f := newFixture(t)
	const pods = 40
	results := make([]Result, pods*2)
	var wg sync.WaitGroup
	for i := range pods * 2 {
		wg.Go(func() {
			// Every pod is set up twice at once.
			r, err := f.e.Setup(ctx, pod(fmt.Sprintf("p%d", i%pods)))
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for i := range pods {
		if ip(results[i]) != ip(results[i+pods]) {
			t.Errorf("pod p%d got %s and %s", i, ip(results[i]), ip(results[i+pods]))
		}
		if j, dup := seen[ip(results[i])]; dup {
			t.Errorf("pods p%d and p%d share %s", i, j, ip(results[i]))
		}
		seen[ip(results[i])] = i
	}
	if n := f.links.count("addPodLink"); n != pods {
		t.Errorf("%d veths made for %d pods", n, pods)
	}
}

func TestUninstall(t *testing.T) {
	f := newFixture(t)
	if _, err := f.e.Setup(ctx, pod("a", PortMapping{ContainerPort: 80, HostPort: 8080})); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if left := f.ipt.userChains(); len(left) != 0 {
		t.Errorf("chains left: %v", left)
	}
	for _, c := range []struct{ table, chain string }{{"nat", "PREROUTING"}, {"nat", "OUTPUT"}, {"nat", "POSTROUTING"}, {"filter", "FORWARD"}} {
		if r := f.ipt.rules(c.table, c.chain); len(r) != 0 {
			t.Errorf("%s/%s still has %q", c.table, c.chain, r)
		}
	}
	if f.links.links[DefaultBridge] {
		t.Error("bridge left")
	}
}
