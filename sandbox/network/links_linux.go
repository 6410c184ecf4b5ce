package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netlinkLinks implements links in the daemon's network namespace, and in
// pods' namespaces through netlink handles bound to them, so no goroutine
// ever changes namespace.
type netlinkLinks struct{}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

func (netlinkLinks) ensureBridge(name string, mtu int, gateways []netip.Prefix) error {
	br, err := netlink.LinkByName(name)
	if isNotFound(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.MTU = mtu
		err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		br, err = netlink.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", name, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s exists and is a %s, not a bridge", name, br.Type())
	}
	for _, gw := range gateways {
		err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipNet(gw)})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add gateway %s to bridge %s: %w", gw, name, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("set bridge %s up: %w", name, err)
	}
	return nil
}

func (netlinkLinks) addPodLink(l podLink) (retErr error) {
	ns, err := vnetns.GetFromPath(l.NetNS)
	if err != nil {
		return fmt.Errorf("open pod netns %s: %w", l.NetNS, err)
	}
	defer ns.Close()
	br, err := netlink.LinkByName(l.Bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", l.Bridge, err)
	}

	// The peer is created directly inside the pod's namespace under its
	// final name, and the host end directly on the bridge: no move or
	// rename, fewer round trips.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = l.HostVeth
	attrs.MTU = l.MTU
	attrs.MasterIndex = br.Attrs().Index
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: l.IfName, PeerNamespace: netlink.NsFd(ns), PeerTxQLen: -1}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", l.HostVeth, err)
	}
	defer func() {
		if retErr != nil {
			_ = netlink.LinkDel(veth)
		}
	}()
	host, err := netlink.LinkByName(l.HostVeth)
	if err != nil {
		return fmt.Errorf("find veth %s: %w", l.HostVeth, err)
	}
	// Hairpin lets a pod reach itself through a service address that
	// kube-proxy DNATs back to it while the frame is still bridged.
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("set hairpin on %s: %w", l.HostVeth, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", l.HostVeth, err)
	}

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", l.NetNS, err)
	}
	defer h.Close()
	pod, err := h.LinkByName(l.IfName)
	if err != nil {
		return fmt.Errorf("find %s in pod: %w", l.IfName, err)
	}
	if err := h.AddrAdd(pod, &netlink.Addr{IPNet: ipNet(l.Addr)}); err != nil {
		return fmt.Errorf("add %s to %s in pod: %w", l.Addr, l.IfName, err)
	}
	if err := h.LinkSetUp(pod); err != nil {
		return fmt.Errorf("set %s up in pod: %w", l.IfName, err)
	}
	route := &netlink.Route{LinkIndex: pod.Attrs().Index, Gw: net.IP(l.Gateway.AsSlice())}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("add default route via %s in pod: %w", l.Gateway, err)
	}
	return nil
}

func (netlinkLinks) linkExists(name string) (bool, error) {
	_, err := netlink.LinkByName(name)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("find link %s: %w", name, err)
	}
}

func (netlinkLinks) delLink(name string) error {
	l, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

func (netlinkLinks) defaultMTU() (int, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		l, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("find default route link: %w", err)
		}
		return l.Attrs().MTU, nil
	}
	return 0, errors.New("no default route")
}

func (netlinkLinks) setSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", key)
	if cur, err := os.ReadFile(p); err == nil && string(cur) == value+"\n" {
		return nil
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s: %w", key, err)
	}
	return nil
}
