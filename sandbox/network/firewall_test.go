package network

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestFirewallEnsureIsIdempotent(t *testing.T) {
	ipt := newFakeIPT()
	f := &firewall{ipt: ipt, bridge: "br-test", prefix: "WPT"}
	subnets := []netip.Prefix{netip.MustParsePrefix("10.5.0.0/24")}
	for range 2 {
		if err := f.ensure(subnets); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{
		"nat/PREROUTING":  {"-m addrtype --dst-type LOCAL -m comment --comment warmpod br-test -j WPT-HOSTPORTS"},
		"nat/OUTPUT":      {"-m addrtype --dst-type LOCAL -m comment --comment warmpod br-test -j WPT-HOSTPORTS"},
		"nat/POSTROUTING": {"-m comment --comment warmpod br-test -j WPT-POSTROUTING"},
		"filter/FORWARD":  {"-m comment --comment warmpod br-test -j WPT-FORWARD"},
		"filter/INPUT":    {"-m comment --comment warmpod br-test -j WPT-INPUT"},
		"filter/WPT-INPUT": {
			"-i br-test -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
		},
		"filter/WPT-FORWARD": {
			"-i br-test -j ACCEPT",
			"-o br-test -j ACCEPT",
		},
		"nat/WPT-POSTROUTING": {
			"-s 127.0.0.0/8 -o br-test -j MASQUERADE",
			"-s 10.5.0.0/24 ! -o br-test ! -d 224.0.0.0/4 -j MASQUERADE",
			"-s 10.5.0.0/24 -o br-test -m conntrack --ctstate DNAT -j MASQUERADE",
		},
		"nat/WPT-HOSTPORTS": nil,
	}
	for tc, rules := range want {
		table, chain, _ := strings.Cut(tc, "/")
		if !ipt.hasChain(table, chain) {
			t.Errorf("chain %s missing", tc)
			continue
		}
		if got := ipt.rules(table, chain); !slices.Equal(got, rules) {
			t.Errorf("%s = %q\nwant %q", tc, got, rules)
		}
	}
}

// Our FORWARD jump must come before DROP rules other software appends.
func TestFirewallForwardJumpFirst(t *testing.T) {
	ipt := newFakeIPT()
	ipt.tables["filter"]["FORWARD"] = []string{"-j DROP"}
	f := &firewall{ipt: ipt, bridge: "br", prefix: "WPT"}
	if err := f.ensure(nil); err != nil {
		t.Fatal(err)
	}
	if got := ipt.rules("filter", "FORWARD"); len(got) != 2 || !strings.HasSuffix(got[0], "-j WPT-FORWARD") {
		t.Fatalf("FORWARD = %q", got)
	}
}

// Issue 12 (CVE-2020-8558): route_localnet on the bridge lets pods address the node's loopback; the
// drop rule must come before ACCEPT rules others put in INPUT, and go with the network.
func TestFirewallDropsPodsToLoopback(t *testing.T) {
	ipt := newFakeIPT()
	ipt.tables["filter"]["INPUT"] = []string{"-i br -j ACCEPT"}
	f := &firewall{ipt: ipt, bridge: "br", prefix: "WPT"}
	if err := f.ensure(nil); err != nil {
		t.Fatal(err)
	}
	if got := ipt.rules("filter", "INPUT"); len(got) != 2 || !strings.HasSuffix(got[0], "-j WPT-INPUT") {
		t.Fatalf("INPUT = %q", got)
	}
	if ok, err := f.present(); err != nil || !ok {
		t.Fatalf("present = %t, %v", ok, err)
	}
	// A flush of INPUT alone (a firewall reload) is noticed and repaired.
	ipt.tables["filter"]["INPUT"] = nil
	if ok, err := f.present(); err != nil || ok {
		t.Fatalf("present after INPUT was flushed = %t, %v", ok, err)
	}
	if err := f.uninstall(); err != nil {
		t.Fatal(err)
	}
	if ipt.hasChain("filter", "WPT-INPUT") || slices.ContainsFunc(ipt.rules("filter", "INPUT"), func(r string) bool { return strings.Contains(r, "WPT") }) {
		t.Errorf("input chain or jump left: %q", ipt.rules("filter", "INPUT"))
	}
}

func TestDNATRule(t *testing.T) {
	ip := netip.MustParseAddr("10.88.0.7")
	for _, tc := range []struct {
		pm   PortMapping
		want string
	}{
		{PortMapping{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}, "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.7:80"},
		{PortMapping{Protocol: "udp", ContainerPort: 53, HostPort: 5353, HostIP: "127.0.0.1"}, "-d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.88.0.7:53"},
		{PortMapping{Protocol: "sctp", ContainerPort: 9, HostPort: 9}, "-p sctp -m sctp --dport 9 -j DNAT --to-destination 10.88.0.7:9"},
	} {
		if got := strings.Join(dnatRule(tc.pm, ip), " "); got != tc.want {
			t.Errorf("dnatRule(%+v) = %q\nwant %q", tc.pm, got, tc.want)
		}
	}
}

func TestChainNamesFitIPTables(t *testing.T) {
	f := &firewall{prefix: strings.Repeat("P", maxChainPrefix)}
	for _, c := range []string{f.hostportsChain(), f.postroutingChain(), f.forwardChain(), f.inputChain(), f.podChain("some-pod-id")} {
		if len(c) > 28 {
			t.Errorf("chain %q is %d characters, iptables allows 28", c, len(c))
		}
	}
	if f.podChain("a") == f.podChain("b") {
		t.Error("two pods share a chain")
	}
}
