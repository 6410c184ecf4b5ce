package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/warmpod/warmpod/runtime/atomicfile"
)

// EmbeddedConfig configures the embedded network. Zero fields take the
// defaults below.
type EmbeddedConfig struct {
	// Bridge is the host bridge pods attach to (default warmpod0).
	Bridge string
	// Subnet is the pod range until UpdatePodCIDR names another (default
	// 10.88.0.0/16). Its first address is the gateway on the bridge.
	Subnet string
	// MTU of the bridge and veths; 0 takes the MTU of the host's default
	// route interface, so pods never send more than the uplink carries.
	MTU int
	// StateDir holds IP allocations, the pod CIDR and each pod's network
	// state (required). It belongs on tmpfs, such as /run/warmpod/network:
	// no pod survives a reboot, and neither should its allocation.
	StateDir string
	// ChainPrefix starts the name of every iptables chain of this network
	// (default WARMPOD; at most 12 characters).
	ChainPrefix string
}

// Defaults of EmbeddedConfig.
const (
	DefaultBridge      = "warmpod0"
	DefaultSubnet      = "10.88.0.0/16"
	DefaultChainPrefix = "WARMPOD"
	fallbackMTU        = 1500
)

// Embedded is the built-in network: a bridge with one veth per pod.
//
// Setup and Teardown of one pod ID are serialised by a per-pod lock;
// different pods proceed in parallel and only meet briefly in the
// allocator and the host port table. Nothing on the kernel side is touched
// by NewEmbedded: the bridge, sysctls and base iptables rules are made by
// the first Ready or Setup, and made again if they fail or disappear.
type Embedded struct {
	cfg    EmbeddedConfig
	links  links
	fw     *firewall
	ipam   *ipam
	states jsonStore[podState]
	locks  podLocks

	infraMu sync.Mutex
	// infraOK is set once the bridge and base rules are in place for every
	// subnet in ipam.subnets().
	infraOK bool
	mtu     int

	portsMu sync.Mutex
	// ports maps every host port of a set-up pod to the pod's ID.
	ports map[portKey]string
}

var _ Plugin = (*Embedded)(nil)

// podCIDRFile records the CIDR UpdatePodCIDR set, so a restart keeps it.
const podCIDRFile = "pod-cidr"

func (c *EmbeddedConfig) normalize() error {
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.Subnet == "" {
		c.Subnet = DefaultSubnet
	}
	if c.ChainPrefix == "" {
		c.ChainPrefix = DefaultChainPrefix
	}
	if len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/ \t\n:") {
		return fmt.Errorf("%w: bridge name %q (at most 15 characters, no '/', ':' or spaces)", ErrInvalid, c.Bridge)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fmt.Errorf("%w: MTU %d out of range 68-65535", ErrInvalid, c.MTU)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("%w: state dir %q must be an absolute path", ErrInvalid, c.StateDir)
	}
	if len(c.ChainPrefix) > maxChainPrefix {
		return fmt.Errorf("%w: chain prefix %q longer than %d characters", ErrInvalid, c.ChainPrefix, maxChainPrefix)
	}
	for _, r := range c.ChainPrefix {
		if !chainPrefixRune(r) {
			return fmt.Errorf("%w: chain prefix %q may only hold A-Z, 0-9, '-' and '_'", ErrInvalid, c.ChainPrefix)
		}
	}
	return nil
}

// chainPrefixRune tells whether r may be in an iptables chain prefix.
func chainPrefixRune(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// newEmbedded builds an Embedded on the given kernel seams and loads the
// persisted state.
func newEmbedded(cfg EmbeddedConfig, l links, ipt iptables) (*Embedded, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	subnet, err := validSubnet(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	podsDir := filepath.Join(cfg.StateDir, "pods")
	if err := os.MkdirAll(podsDir, 0o700); err != nil {
		return nil, fmt.Errorf("create network state dir: %w", err)
	}
	switch b, err := os.ReadFile(filepath.Join(cfg.StateDir, podCIDRFile)); {
	case err == nil:
		if subnet, err = validSubnet(strings.TrimSpace(string(b))); err != nil {
			return nil, fmt.Errorf("persisted pod CIDR: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read persisted pod CIDR: %w", err)
	}
	a, err := openIPAM(filepath.Join(cfg.StateDir, "ipam"), subnet)
	if err != nil {
		return nil, err
	}
	e := &Embedded{
		cfg:    cfg,
		links:  l,
		fw:     &firewall{ipt: ipt, bridge: cfg.Bridge, prefix: cfg.ChainPrefix},
		ipam:   a,
		states: jsonStore[podState]{dir: podsDir, noun: "network state"},
		ports:  map[portKey]string{},
	}
	states, err := e.states.list()
	if err != nil {
		return nil, err
	}
	for _, st := range states {
		for _, pm := range st.PortMappings {
			e.ports[keyOf(pm)] = st.ID
		}
	}
	return e, nil
}

// Name implements Plugin.
func (e *Embedded) Name() string { return "embedded" }

// Ready implements Plugin: it makes sure the bridge and base rules exist.
func (e *Embedded) Ready() error {
	if _, err := e.ensureInfra(true); err != nil {
		return fmt.Errorf("embedded network not ready: %w", err)
	}
	return nil
}

// ensureInfra puts the bridge, sysctls and base iptables rules in place,
// once. With verify it first checks that the bridge and our iptables
// chains still exist, so a deleted bridge or a flushed firewall (a
// firewalld reload) is repaired by the kubelet's next status poll. It
// returns the MTU for pod links.
func (e *Embedded) ensureInfra(verify bool) (mtu int, _ error) {
	e.infraMu.Lock()
	defer e.infraMu.Unlock()
	return e.ensureInfraLocked(verify)
}

// Preconditions: e.infraMu held.
func (e *Embedded) ensureInfraLocked(verify bool) (mtu int, _ error) {
	if e.infraOK && verify {
		ok, err := e.links.linkExists(e.cfg.Bridge)
		if err != nil {
			return 0, err
		}
		if ok {
			ok, err = e.fw.present()
			if err != nil {
				return 0, err
			}
		}
		e.infraOK = ok
	}
	if e.infraOK {
		return e.mtu, nil
	}
	if e.mtu == 0 {
		e.mtu = e.cfg.MTU
		if e.mtu == 0 {
			mtu, err := e.links.defaultMTU()
			if err != nil || mtu < 68 {
				mtu = fallbackMTU
			}
			e.mtu = mtu
		}
	}
	subnets := e.ipam.subnets()
	gws := make([]netip.Prefix, len(subnets))
	for i, s := range subnets {
		gws[i] = gateway(s)
	}
	if err := e.links.ensureBridge(e.cfg.Bridge, e.mtu, gws); err != nil {
		return 0, err
	}
	// The firewall first: its INPUT rule must be in place before
	// route_localnet lets pods address the node's loopback.
	if err := e.fw.ensure(subnets); err != nil {
		return 0, err
	}
	// Pods reach beyond the node only if the node forwards; host ports
	// reached as 127.0.0.1 need loopback sources allowed on the bridge.
	for _, sc := range []struct{ key, value string }{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv4/conf/" + e.cfg.Bridge + "/route_localnet", "1"},
	} {
		if err := e.links.setSysctl(sc.key, sc.value); err != nil {
			return 0, err
		}
	}
	e.infraOK = true
	return e.mtu, nil
}

func (e *Embedded) invalidateInfra() {
	e.infraMu.Lock()
	e.infraOK = false
	e.infraMu.Unlock()
}

// UpdatePodCIDR makes new allocations come from cidr (the node's pod CIDR
// from CRI UpdateRuntimeConfig). Pods keep their addresses from earlier
// ranges; the bridge keeps serving as their gateway too. A dual-stack
// value ("v4,v6") uses its IPv4 range, since the embedded network is IPv4
// only; an empty value changes nothing.
func (e *Embedded) UpdatePodCIDR(cidr string) error {
	var v4 string
	for _, c := range strings.Split(cidr, ",") {
		c = strings.TrimSpace(c)
		if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
			v4 = c
			break
		} else if err != nil && c != "" {
			return fmt.Errorf("%w: pod CIDR %q is not a CIDR", ErrInvalid, c)
		}
	}
	if v4 == "" {
		if strings.TrimSpace(cidr) == "" {
			return nil
		}
		return fmt.Errorf("%w: pod CIDR %q has no IPv4 range", ErrInvalid, cidr)
	}
	subnet, err := validSubnet(v4)
	if err != nil {
		return err
	}
	if subnet == e.ipam.currentSubnet() {
		return nil
	}
	if err := atomicfile.Write(filepath.Join(e.cfg.StateDir, podCIDRFile), []byte(subnet.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("persist pod CIDR: %w", err)
	}
	// Under infraMu so that no Setup sees the new range as ready before
	// its gateway and masquerading are in place.
	e.infraMu.Lock()
	defer e.infraMu.Unlock()
	e.ipam.setSubnet(subnet)
	e.infraOK = false
	if _, err := e.ensureInfraLocked(false); err != nil {
		return fmt.Errorf("set up gateway for pod CIDR %s: %w", subnet, err)
	}
	return nil
}

// vethName derives the host end's name from the pod ID alone, so Teardown
// finds it with no state at all.
func vethName(podID string) string {
	sum := sha256.Sum256([]byte(podID))
	return "wp" + hex.EncodeToString(sum[:])[:13]
}

// undoStack collects rollback steps; they run last-in first-out.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }

func (u undoStack) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// Setup implements Plugin.
func (e *Embedded) Setup(ctx context.Context, pod Pod) (_ Result, retErr error) {
	if err := validateID(pod.ID); err != nil {
		return Result{}, err
	}
	if pod.NetNS == "" {
		return Result{}, fmt.Errorf("%w: pod %q has no network namespace path", ErrInvalid, pod.ID)
	}
	pms, err := normalizePorts(pod.PortMappings)
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	unlock := e.locks.lock(pod.ID)
	defer unlock()

	mtu, err := e.ensureInfra(false)
	if err != nil {
		return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
	}
	old, err := e.states.load(pod.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
	}
	if old != nil && old.Complete {
		// Already done: answer with the first result, as long as the veth
		// is still there (otherwise redo it with the same address).
		if ok, err := e.links.linkExists(old.HostVeth); err == nil && ok {
			return old.result()
		}
	}
	// Redoing an interrupted or damaged Setup: drop its host ports, which
	// the new state might not list any more.
	if old != nil && len(old.PortMappings) > 0 {
		if err := e.fw.removeHostports(pod.ID); err != nil {
			return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
		}
	}

	var undo undoStack
	defer func() {
		if retErr != nil {
			undo.run()
		}
	}()
	ip, subnet, err := e.ipam.allocate(pod.ID)
	if err != nil {
		return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
	}
	undo.push(func() { _ = e.ipam.release(pod.ID) })
	if err := e.reservePorts(pod.ID, pms); err != nil {
		return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
	}
	undo.push(func() { e.unreservePorts(pod.ID) })

	gw := gateway(subnet).Addr()
	st := &podState{
		ID: pod.ID, Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
		NetNS: pod.NetNS, HostVeth: vethName(pod.ID),
		Subnet: subnet.String(), IP: ip.String(), Gateway: gw.String(),
		PortMappings: pms,
	}
	if err := e.states.save(st.ID, st); err != nil {
		return Result{}, err
	}
	undo.push(func() { _ = e.states.remove(pod.ID) })

	// A veth left by an interrupted Setup would make creation fail.
	if err := e.links.delLink(st.HostVeth); err != nil {
		return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
	}
	err = e.links.addPodLink(podLink{
		HostVeth: st.HostVeth, Bridge: e.cfg.Bridge, NetNS: pod.NetNS, IfName: podInterface,
		Addr: netip.PrefixFrom(ip, subnet.Bits()), Gateway: gw, MTU: mtu,
	})
	if err != nil {
		// The bridge may have been deleted under us; rebuild it next time.
		e.invalidateInfra()
		return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
	}
	undo.push(func() { _ = e.links.delLink(st.HostVeth) })

	if len(pms) > 0 {
		undo.push(func() { _ = e.fw.removeHostports(pod.ID) })
		if err := e.fw.addHostports(pod.ID, ip, pms); err != nil {
			return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
		}
	}
	st.Complete = true
	if err := e.states.save(st.ID, st); err != nil {
		return Result{}, err
	}
	return st.result()
}

// Teardown implements Plugin. It needs only the pod ID: the veth and
// iptables chain names derive from it, and the rest is in persisted
// state. Per the CRI contract (StopPodSandbox must succeed for an unknown
// sandbox) a pod without a network is not an error. State is removed last,
// so a Teardown interrupted half-way can simply be repeated.
func (e *Embedded) Teardown(ctx context.Context, pod Pod) error {
	if err := validateID(pod.ID); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock := e.locks.lock(pod.ID)
	defer unlock()

	st, err := e.states.load(pod.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("tear down network of pod %q: %w", pod.ID, err)
	}
	// Setup saves state before it makes a chain, so no state, no chain.
	if st != nil && len(st.PortMappings) > 0 {
		if err := e.fw.removeHostports(pod.ID); err != nil {
			return fmt.Errorf("tear down network of pod %q: %w", pod.ID, err)
		}
	}
	// With the netns gone the kernel has already deleted both ends.
	if err := e.links.delLink(vethName(pod.ID)); err != nil {
		return fmt.Errorf("tear down network of pod %q: %w", pod.ID, err)
	}
	if err := e.ipam.release(pod.ID); err != nil {
		return fmt.Errorf("tear down network of pod %q: %w", pod.ID, err)
	}
	e.unreservePorts(pod.ID)
	if err := e.states.remove(pod.ID); err != nil {
		return fmt.Errorf("tear down network of pod %q: %w", pod.ID, err)
	}
	return nil
}

// Status implements Plugin.
func (e *Embedded) Status(ctx context.Context, pod Pod) (Result, error) {
	if err := validateID(pod.ID); err != nil {
		return Result{}, err
	}
	st, err := e.states.load(pod.ID)
	if err != nil {
		return Result{}, fmt.Errorf("network status of pod %q: %w", pod.ID, err)
	}
	if !st.Complete {
		return Result{}, fmt.Errorf("network status of pod %q: %w (setup did not finish)", pod.ID, ErrNotFound)
	}
	return st.result()
}

// reservePorts makes pms the pod's host ports, failing with
// ErrPortConflict if another pod holds one of them.
func (e *Embedded) reservePorts(podID string, pms []PortMapping) error {
	e.portsMu.Lock()
	defer e.portsMu.Unlock()
	for _, pm := range pms {
		k := keyOf(pm)
		for held, owner := range e.ports {
			if owner != podID && held.overlaps(k) {
				return fmt.Errorf("host port %s: %w (pod %q)", k, ErrPortConflict, owner)
			}
		}
	}
	e.dropPortsLocked(podID)
	for _, pm := range pms {
		e.ports[keyOf(pm)] = podID
	}
	return nil
}

func (e *Embedded) unreservePorts(podID string) {
	e.portsMu.Lock()
	defer e.portsMu.Unlock()
	e.dropPortsLocked(podID)
}

// dropPortsLocked forgets every host port of pod podID.
//
// Preconditions: e.portsMu is held.
func (e *Embedded) dropPortsLocked(podID string) {
	for k, owner := range e.ports {
		if owner == podID {
			delete(e.ports, k)
		}
	}
}

// Uninstall removes the bridge and every iptables chain and rule of this
// network. It is for decommissioning a node (and for tests); pods must be
// torn down first. StateDir is left to the caller.
func (e *Embedded) Uninstall() error {
	e.infraMu.Lock()
	defer e.infraMu.Unlock()
	e.infraOK = false
	if err := e.fw.uninstall(); err != nil {
		return err
	}
	return e.links.delLink(e.cfg.Bridge)
}

// podLocks serialises operations on one pod ID.
type podLocks struct {
	mu sync.Mutex
	m  map[string]*podLock
}

type podLock struct {
	sync.Mutex
	refs int
}

func (l *podLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*podLock{}
	}
	pl := l.m[id]
	if pl == nil {
		pl = &podLock{}
		l.m[id] = pl
	}
	pl.refs++
	l.mu.Unlock()

	pl.Lock()
	return func() {
		pl.Unlock()
		l.mu.Lock()
		if pl.refs--; pl.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}
