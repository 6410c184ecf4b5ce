package network

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// iptables is the part of github.com/coreos/go-iptables the embedded
// network uses; *iptables.IPTables implements it.
type iptables interface {
	ChainExists(table, chain string) (bool, error)
	ListChains(table string) ([]string, error)
	NewChain(table, chain string) error
	ClearChain(table, chain string) error
	ClearAndDeleteChain(table, chain string) error
	Append(table, chain string, rulespec ...string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	AppendUnique(table, chain string, rulespec ...string) error
	InsertUnique(table, chain string, pos int, rulespec ...string) error
	DeleteIfExists(table, chain string, rulespec ...string) error
}

// firewall owns the iptables rules of one embedded network. All its chains
// start with prefix, so two networks (a test's and the daemon's) never share
// a rule:
//
//	nat PREROUTING, OUTPUT -(local destination)-> <prefix>-HOSTPORTS -> <prefix>-HP-<pod hash> (DNAT rules of one pod)
//	nat POSTROUTING -> <prefix>-POSTROUTING (masquerading)
//	filter FORWARD -> <prefix>-FORWARD (accept traffic to and from the bridge)
//	filter INPUT -> <prefix>-INPUT (drop what pods send to the node's loopback addresses)
//
// One chain per pod makes Teardown exact without parsing rules back: the
// chain and the jump to it are named by the pod ID alone.
type firewall struct {
	ipt    iptables
	bridge string
	prefix string
	// unavailable says why there is no iptables (ipt is nil then). Only
	// operations that need it fail, so the daemon still starts and
	// reports the network as not ready.
	unavailable error
}

func (f *firewall) check() error {
	if f.ipt == nil {
		return fmt.Errorf("iptables unavailable: %w", f.unavailable)
	}
	return nil
}

func (f *firewall) hostportsChain() string   { return f.prefix + "-HOSTPORTS" }
func (f *firewall) postroutingChain() string { return f.prefix + "-POSTROUTING" }
func (f *firewall) forwardChain() string     { return f.prefix + "-FORWARD" }
func (f *firewall) inputChain() string       { return f.prefix + "-INPUT" }

// podChainInfix marks per-pod chains.
const podChainInfix = "-HP-"

func (f *firewall) podChain(podID string) string {
	sum := sha256.Sum256([]byte(podID))
	return f.prefix + podChainInfix + strings.ToUpper(hex.EncodeToString(sum[:6]))
}

// maxChainPrefix keeps every chain name within iptables' 28 characters.
const maxChainPrefix = 12

func (f *firewall) ensureChain(table, chain string) error {
	ok, err := f.ipt.ChainExists(table, chain)
	if err != nil {
		return fmt.Errorf("check chain %s/%s: %w", table, chain, err)
	}
	if ok {
		return nil
	}
	if err := f.ipt.NewChain(table, chain); err != nil {
		return fmt.Errorf("create chain %s/%s: %w", table, chain, err)
	}
	return nil
}

// rule is one rule of a base setup, in the order it is installed.
type rule struct {
	table, chain string
	insert       bool // at the top of a built-in chain, ahead of DROP rules others add
	spec         []string
}

func (f *firewall) baseRules() []rule {
	comment := []string{"-m", "comment", "--comment", "warmpod " + f.bridge}
	local := []string{"-m", "addrtype", "--dst-type", "LOCAL"}
	return []rule{
		{table: "nat", chain: "PREROUTING", spec: slices.Concat(local, comment, []string{"-j", f.hostportsChain()})},
		{table: "nat", chain: "OUTPUT", spec: slices.Concat(local, comment, []string{"-j", f.hostportsChain()})},
		{table: "nat", chain: "POSTROUTING", spec: slices.Concat(comment, []string{"-j", f.postroutingChain()})},
		{table: "filter", chain: "FORWARD", insert: true, spec: slices.Concat(comment, []string{"-j", f.forwardChain()})},
		{table: "filter", chain: f.forwardChain(), spec: []string{"-i", f.bridge, "-j", "ACCEPT"}},
		{table: "filter", chain: f.forwardChain(), spec: []string{"-o", f.bridge, "-j", "ACCEPT"}},
		// A host port reached from the node as 127.0.0.1 leaves through the
		// bridge with a loopback source (allowed by route_localnet on the
		// bridge); the pod could not answer it without masquerading.
		{table: "nat", chain: f.postroutingChain(), spec: []string{"-s", "127.0.0.0/8", "-o", f.bridge, "-j", "MASQUERADE"}},
		// route_localnet also makes the node take packets for 127.0.0.0/8
		// that arrive on the bridge: a pod with CAP_NET_RAW (which pods have
		// by default) could reach every service the node binds to its
		// loopback address (CVE-2020-8558). Drop them unless they answer a
		// connection the node opened, as kube-proxy does.
		{table: "filter", chain: "INPUT", insert: true, spec: slices.Concat(comment, []string{"-j", f.inputChain()})},
		{table: "filter", chain: f.inputChain(), spec: []string{"-i", f.bridge, "-d", "127.0.0.0/8",
			"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"}},
	}
}

// subnetRules masquerade a pod subnet's traffic leaving the node, and
// traffic from a pod that was DNATed back onto the bridge (a pod reaching a
// host port, possibly its own): without it the answer would go straight
// from pod to pod and never match the connection.
func (f *firewall) subnetRules(s netip.Prefix) []rule {
	return []rule{
		{table: "nat", chain: f.postroutingChain(), spec: []string{"-s", s.String(), "!", "-o", f.bridge, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"}},
		{table: "nat", chain: f.postroutingChain(), spec: []string{"-s", s.String(), "-o", f.bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE"}},
	}
}

// ensure installs the base chains and rules and those of each subnet. It
// is idempotent.
func (f *firewall) ensure(subnets []netip.Prefix) error {
	if err := f.check(); err != nil {
		return err
	}
	for _, c := range []struct{ table, chain string }{
		{"nat", f.hostportsChain()}, {"nat", f.postroutingChain()}, {"filter", f.forwardChain()}, {"filter", f.inputChain()},
	} {
		if err := f.ensureChain(c.table, c.chain); err != nil {
			return err
		}
	}
	rules := f.baseRules()
	for _, s := range subnets {
		rules = append(rules, f.subnetRules(s)...)
	}
	for _, r := range rules {
		var err error
		if r.insert {
			err = f.ipt.InsertUnique(r.table, r.chain, 1, r.spec...)
		} else {
			err = f.ipt.AppendUnique(r.table, r.chain, r.spec...)
		}
		if err != nil {
			return fmt.Errorf("add iptables rule to %s/%s: %w", r.table, r.chain, err)
		}
	}
	return nil
}

// present reports whether the base rules still look installed: the jumps
// into our host port and input chains are the first things a flush would
// remove.
func (f *firewall) present() (bool, error) {
	if err := f.check(); err != nil {
		return false, err
	}
	for _, r := range f.baseRules() {
		if r.chain != "PREROUTING" && r.chain != "INPUT" {
			continue
		}
		target := r.spec[len(r.spec)-1]
		ok, err := f.ipt.ChainExists(r.table, target)
		if err != nil || !ok {
			return false, err
		}
		if ok, err := f.ipt.Exists(r.table, r.chain, r.spec...); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func (f *firewall) podJump(podID string) []string {
	return []string{"-m", "comment", "--comment", "pod " + podID, "-j", f.podChain(podID)}
}

// addHostports installs the DNAT rules of one pod, replacing any it had.
func (f *firewall) addHostports(podID string, ip netip.Addr, pms []PortMapping) error {
	if err := f.check(); err != nil {
		return err
	}
	chain := f.podChain(podID)
	ok, err := f.ipt.ChainExists("nat", chain)
	if err != nil {
		return fmt.Errorf("check chain %s: %w", chain, err)
	}
	if ok {
		err = f.ipt.ClearChain("nat", chain)
	} else {
		err = f.ipt.NewChain("nat", chain)
	}
	if err != nil {
		return fmt.Errorf("prepare host port chain %s: %w", chain, err)
	}
	for _, pm := range pms {
		if err := f.ipt.Append("nat", chain, dnatRule(pm, ip)...); err != nil {
			return fmt.Errorf("map host port %s to %s:%d: %w", keyOf(pm), ip, pm.ContainerPort, err)
		}
	}
	if err := f.ipt.AppendUnique("nat", f.hostportsChain(), f.podJump(podID)...); err != nil {
		return fmt.Errorf("enable host ports of pod %q: %w", podID, err)
	}
	return nil
}

func dnatRule(pm PortMapping, ip netip.Addr) []string {
	var spec []string
	if pm.HostIP != "" {
		spec = append(spec, "-d", pm.HostIP+"/32")
	}
	return append(spec,
		"-p", pm.Protocol, "-m", pm.Protocol, "--dport", strconv.Itoa(int(pm.HostPort)),
		"-j", "DNAT", "--to-destination", netip.AddrPortFrom(ip, uint16(pm.ContainerPort)).String())
}

// removeHostports deletes the pod's jump and chain; missing ones are fine.
// iptables cannot even check for a jump to a chain that does not exist, and
// cannot have made one, so a missing chain means nothing to do.
func (f *firewall) removeHostports(podID string) error {
	if err := f.check(); err != nil {
		return err
	}
	chain := f.podChain(podID)
	ok, err := f.ipt.ChainExists("nat", chain)
	if err != nil {
		return fmt.Errorf("check chain %s: %w", chain, err)
	}
	if !ok {
		return nil
	}
	if err := f.deleteJump("nat", f.hostportsChain(), f.podJump(podID)); err != nil {
		return fmt.Errorf("remove host port jump of pod %q: %w", podID, err)
	}
	if err := f.ipt.ClearAndDeleteChain("nat", chain); err != nil {
		return fmt.Errorf("remove host port chain %s: %w", chain, err)
	}
	return nil
}

// deleteJump deletes a rule from chain if both chain and the rule exist.
func (f *firewall) deleteJump(table, chain string, spec []string) error {
	ok, err := f.ipt.ChainExists(table, chain)
	if err != nil || !ok {
		return err
	}
	return f.ipt.DeleteIfExists(table, chain, spec...)
}

// uninstall removes every rule and chain of this network.
func (f *firewall) uninstall() error {
	if err := f.check(); err != nil {
		return err
	}
	for _, r := range f.baseRules() {
		if r.chain == f.forwardChain() || r.chain == f.postroutingChain() || r.chain == f.inputChain() {
			continue // go with their chain
		}
		// The jump can only exist, and only be checked, while its target does.
		target := r.spec[len(r.spec)-1]
		ok, err := f.ipt.ChainExists(r.table, target)
		if err != nil {
			return fmt.Errorf("check chain %s/%s: %w", r.table, target, err)
		}
		if !ok {
			continue
		}
		if err := f.ipt.DeleteIfExists(r.table, r.chain, r.spec...); err != nil {
			return fmt.Errorf("remove iptables rule from %s/%s: %w", r.table, r.chain, err)
		}
	}
	for _, table := range []string{"nat", "filter"} {
		chains, err := f.ipt.ListChains(table)
		if err != nil {
			return fmt.Errorf("list %s chains: %w", table, err)
		}
		var ours []string
		for _, c := range chains {
			if c == f.hostportsChain() || c == f.postroutingChain() || c == f.forwardChain() || c == f.inputChain() ||
				strings.HasPrefix(c, f.prefix+podChainInfix) {
				ours = append(ours, c)
			}
		}
		// Flush all first: a chain still jumped to cannot be deleted.
		for _, c := range ours {
			if err := f.ipt.ClearChain(table, c); err != nil {
				return fmt.Errorf("flush chain %s/%s: %w", table, c, err)
			}
		}
		for _, c := range ours {
			if err := f.ipt.ClearAndDeleteChain(table, c); err != nil {
				return fmt.Errorf("remove chain %s/%s: %w", table, c, err)
			}
		}
	}
	return nil
}
