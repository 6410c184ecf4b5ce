package network

import "net/netip"

// links is the kernel side of the embedded network: bridge, veths,
// addresses, routes and sysctls. netlinkLinks implements it with netlink;
// unit tests use a recording fake.
type links interface {
	// ensureBridge creates the bridge if missing, adds each gateway
	// address (prefix = subnet length) and sets it up. Idempotent.
	ensureBridge(name string, mtu int, gateways []netip.Prefix) error
	// addPodLink creates the pod's veth pair and configures both ends. On
	// error it leaves nothing behind.
	addPodLink(l podLink) error
	// linkExists reports whether a host interface exists.
	linkExists(name string) (bool, error)
	// delLink deletes a host interface (for a veth, both ends); a missing
	// one is not an error.
	delLink(name string) error
	// defaultMTU is the MTU of the interface of the host's default route.
	defaultMTU() (int, error)
	// setSysctl writes value to /proc/sys/<key>; key uses '/' separators
	// so interface names may contain dots.
	setSysctl(key, value string) error
}

// podLink describes one pod's veth pair.
type podLink struct {
	HostVeth string
	Bridge   string
	NetNS    string
	IfName   string
	Addr     netip.Prefix // pod IP with the subnet's prefix length
	Gateway  netip.Addr
	MTU      int
}
