package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	goiptables "github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"github.com/warmpod/warmpod/sandbox/netns"
)

// These tests run Debian's CNI plugins (containernetworking-plugins in
// /usr/lib/cni) for real, from a configuration in a temporary directory
// with a bridge, subnet and network name of their own.

const debianCNIDir = "/usr/lib/cni"

type realCNI struct {
	c       *CNI
	cfg     CNIConfig
	bridge  string
	subnet  string
	network string
	// ipamDir is host-local's data dir: one file per allocated address.
	ipamDir string
}

func requireCNIPlugins(t testing.TB, plugins ...string) {
	t.Helper()
	requireRoot(t)
	for _, p := range plugins {
		if _, err := os.Stat(filepath.Join(debianCNIDir, p)); err != nil {
			t.Skipf("CNI plugin %s not installed in %s (Debian package containernetworking-plugins)", p, debianCNIDir)
		}
	}
}

// newRealCNI writes a conflist of bridge + host-local (+ extra plugins,
// found in /usr/lib/cni or binDir) and returns a CNI on it. The bridge the
// plugin makes is deleted when the test ends.
func newRealCNI(t testing.TB, binDir string, extra ...string) *realCNI {
	requireCNIPlugins(t, "bridge", "host-local")
	dir := t.TempDir()
	n := &realCNI{
		bridge: "wpc" + randHex(4), subnet: freeSubnet(t), network: "wpcni" + randHex(4),
		ipamDir: filepath.Join(dir, "ipam"),
	}
	plugins := []string{fmt.Sprintf(`{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
	  "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}}`,
		n.bridge, n.subnet, n.ipamDir)}
	plugins = append(plugins, extra...)
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, n.network, strings.Join(plugins, ",\n"))
	n.cfg = CNIConfig{ConfDir: filepath.Join(dir, "net.d"), BinDirs: []string{debianCNIDir}, CacheDir: filepath.Join(dir, "cache")}
	if binDir != "" {
		n.cfg.BinDirs = append(n.cfg.BinDirs, binDir)
	}
	if err := os.MkdirAll(n.cfg.ConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.cfg.ConfDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewCNI(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.c = c
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(n.bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete test bridge: %v", err)
			}
		}
	})
	if err := c.Ready(); err != nil {
		t.Fatal(err)
	}
	return n
}

// allocated lists the addresses host-local holds.
func (n *realCNI) allocated(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(n.ipamDir, n.network))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func TestCNIRealPodsReachEachOther(t *testing.T) {
	n := newRealCNI(t, "")
	nsA, nsB := newPodNS(t), newPodNS(t)
	pa, pb := Pod{ID: "a" + randHex(8), Name: "a", Namespace: "t", UID: "ua", NetNS: nsA}, Pod{ID: "b" + randHex(8), NetNS: nsB}
	a, b := setupPair(t, n.c, pa, pb)
	_, subnet, _ := net.ParseCIDR(n.subnet)
	for _, r := range []Result{a, b} {
		if len(r.IPs) != 1 || !subnet.Contains(r.IPs[0]) || r.Interface != "eth0" {
			t.Fatalf("result %+v: want one address in %s on eth0", r, n.subnet)
		}
	}
	if a.IPs[0].Equal(b.IPs[0]) {
		t.Fatalf("both pods got %s", a.IPs[0])
	}
	if got := n.allocated(t); len(got) != 2 {
		t.Errorf("host-local holds %v, want two addresses", got)
	}
	checkPodSide(t, nsA, a)
	checkPairReach(t, nsA, nsB, a, b)
	if err := n.c.Check(ctx, pa); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	// DEL releases the address.
	if err := n.c.Teardown(ctx, pa); err != nil {
		t.Fatal(err)
	}
	if got := n.allocated(t); len(got) != 1 || got[0] != b.IPs[0].String() {
		t.Errorf("host-local holds %v after pod a's DEL, want only %s", got, b.IPs[0])
	}
}

// A restarted daemon (a new CNI on the same cache) reports the pod's
// network and tears it down, with its namespace already gone.
func TestCNIRealRestartAndTeardownWithoutNetNS(t *testing.T) {
	n := newRealCNI(t, "")
	dir := filepath.Join(t.TempDir(), "ns")
	paths, err := netns.Create(dir, netns.Options{Net: true})
	if err != nil {
		t.Fatal(err)
	}
	p := Pod{ID: "r" + randHex(8), NetNS: paths.Net}
	first, err := n.c.Setup(ctx, p)
	if err != nil {
		_ = netns.Remove(dir)
		t.Fatal(err)
	}
	c2, err := NewCNI(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c2.Status(ctx, p)
	if err != nil || !st.IPs[0].Equal(first.IPs[0]) {
		t.Fatalf("Status after restart = %+v, %v; want %s", st, err, first.IPs[0])
	}
	if err := netns.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := c2.Teardown(ctx, p); err != nil {
		t.Fatalf("Teardown after restart without netns: %v", err)
	}
	if got := n.allocated(t); len(got) != 0 {
		t.Errorf("host-local still holds %v", got)
	}
	if err := c2.Teardown(ctx, p); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	if _, err := c2.Status(ctx, p); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status after Teardown: %v, want ErrNotFound", err)
	}
}

// A broken configuration makes Ready fail and Setup fail naming the file,
// without an address taken or a link made.
func TestCNIRealBrokenConfig(t *testing.T) {
	n := newRealCNI(t, "")
	bad := filepath.Join(n.cfg.ConfDir, "05-broken.conflist")
	if err := os.WriteFile(bad, []byte(`{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": `), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.c.Ready(); !errors.Is(err, ErrCNIConfig) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Ready = %v, want ErrCNIConfig naming %s", err, bad)
	}
	before, _ := netlink.LinkList()
	_, err := n.c.Setup(ctx, Pod{ID: "x" + randHex(8), NetNS: newPodNS(t)})
	if !errors.Is(err, ErrCNIConfig) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Setup = %v, want ErrCNIConfig naming %s", err, bad)
	}
	after, _ := netlink.LinkList()
	// Links made by the failed Setup; others may come and go meanwhile
	// (a veth goes when the kernel gets round to an old namespace).
	had := map[string]bool{}
	for _, l := range before {
		had[l.Attrs().Name] = true
	}
	for _, l := range after {
		if !had[l.Attrs().Name] {
			t.Errorf("host link %s appeared during the failed Setup", l.Attrs().Name)
		}
	}
	if got := n.allocated(t); len(got) != 0 {
		t.Errorf("host-local holds %v", got)
	}
}

// refusingPlugin is a CNI plugin that fails every ADD and accepts every
// DEL, to fail a chain after bridge and host-local did their part.
const refusingPlugin = `#!/bin/sh
case "$CNI_COMMAND" in
ADD) echo '{"cniVersion": "1.0.0", "code": 999, "msg": "refusing ADD on purpose"}'; exit 1 ;;
VERSION) echo '{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}' ;;
esac
exit 0
`

// A plugin of the chain failing after earlier ones succeeded: the chain is
// deleted again, so host-local's address is released.
func TestCNIRealFailedChainIsUndone(t *testing.T) {
	requireRoot(t)
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "wprefuse"), []byte(refusingPlugin), 0o755); err != nil {
		t.Fatal(err)
	}
	n := newRealCNI(t, bin, `{"type": "wprefuse"}`)
	c := n.c
	before, _ := netlink.LinkList()
	_, err := c.Setup(ctx, Pod{ID: "f" + randHex(8), NetNS: newPodNS(t)})
	if err == nil || !strings.Contains(err.Error(), "refusing ADD on purpose") {
		t.Fatalf("Setup = %v, want the plugin's error", err)
	}
	if got := n.allocated(t); len(got) != 0 {
		t.Errorf("host-local holds %v after the failed chain", got)
	}
	if left, _ := os.ReadDir(c.records.dir); len(left) != 0 {
		t.Errorf("records left: %v", left)
	}
	// The bridge stays (the plugin keeps it for other pods); no veth does.
	after, _ := netlink.LinkList()
	for _, l := range after {
		if l.Type() == "veth" && !slices.ContainsFunc(before, func(o netlink.Link) bool { return o.Attrs().Name == l.Attrs().Name }) {
			t.Errorf("veth %s left", l.Attrs().Name)
		}
	}
}

func BenchmarkCNIRealSetupTeardown(b *testing.B) {
	n := newRealCNI(b, "")
	ns := newPodNS(b)
	for i := 0; b.Loop(); i++ {
		p := Pod{ID: fmt.Sprintf("bench%d", i), NetNS: ns}
		if _, err := n.c.Setup(ctx, p); err != nil {
			b.Fatal(err)
		}
		if err := n.c.Teardown(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

// portmapChains are the node-wide chains the portmap plugin makes on first
// use and never removes.
var portmapChains = []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"}

// removePortmapChainsAfter removes portmap's node-wide chains, and the
// rules jumping to them, when the test ends, unless they existed before
// it: then another runtime on the node uses them.
func removePortmapChainsAfter(t *testing.T) {
	t.Helper()
	ipt, err := goiptables.New()
	if err != nil {
		t.Skipf("iptables: %v", err)
	}
	if ok, _ := ipt.ChainExists("nat", portmapChains[0]); ok {
		return
	}
	t.Cleanup(func() {
		for _, chain := range []string{"PREROUTING", "OUTPUT", "POSTROUTING"} {
			rules, err := ipt.List("nat", chain)
			if err != nil {
				t.Errorf("list nat %s: %v", chain, err)
				continue
			}
			for _, r := range rules {
				if !strings.Contains(r, "-j CNI-HOSTPORT-") {
					continue
				}
				spec, err := splitRule(r)
				if err != nil || len(spec) < 2 {
					t.Errorf("parse rule %q: %v", r, err)
					continue
				}
				// spec is "-A <chain> <rulespec...>".
				if err := ipt.Delete("nat", chain, spec[2:]...); err != nil {
					t.Errorf("delete rule %q: %v", r, err)
				}
			}
		}
		for _, c := range portmapChains {
			if ok, _ := ipt.ChainExists("nat", c); ok {
				if err := ipt.ClearAndDeleteChain("nat", c); err != nil {
					t.Errorf("delete chain %s: %v", c, err)
				}
			}
		}
	})
}

// splitRule splits an iptables -S line into arguments, honouring double
// quotes (comments).
func splitRule(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == '"':
			inQuote, have = !inQuote, true
		case ch == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unbalanced quote")
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}

// Host ports through the portmap plugin and the portMappings capability.
func TestCNIRealHostPort(t *testing.T) {
	requireCNIPlugins(t, "portmap")
	removePortmapChainsAfter(t)
	n := newRealCNI(t, "", `{"type": "portmap", "capabilities": {"portMappings": true}}`)
	ns := newPodNS(t)
	hostPort := 20000 + int(randByte())*40 + int(randByte())%40
	p := Pod{ID: "hp" + randHex(8), NetNS: ns, PortMappings: []PortMapping{{ContainerPort: 8080, HostPort: int32(hostPort)}}}
	if _, err := n.c.Setup(ctx, p); err != nil {
		t.Fatal(err)
	}
	torn := false
	t.Cleanup(func() {
		if !torn {
			_ = n.c.Teardown(ctx, p)
		}
	})
	serve(t, ns, 8080, "pod")
	addr := net.JoinHostPort(nodeIP(t), fmt.Sprint(hostPort))
	if got, err := ask(addr); err != nil || got != "pod" {
		t.Errorf("node asking %s got %q, %v", addr, got, err)
	}
	if err := n.c.Teardown(ctx, p); err != nil {
		t.Fatal(err)
	}
	torn = true
	if _, err := ask(addr); err == nil {
		t.Errorf("host port %d still answers after Teardown", hostPort)
	}
}
