// Package network gives pod sandboxes their network: an IP address in the
// pod's network namespace, a default route, and host ports.
//
// A Plugin is called once per sandbox, when it is created (Setup) and when
// it is stopped or removed (Teardown). In-place resets of a pod's containers
// never touch the network: the IP and veth stay for the sandbox's life.
// Host-network pods never call Setup.
//
// Embedded, the default plugin, needs no CNI configuration: a Linux bridge,
// one veth per pod, a file-backed IP allocator and iptables rules for
// masquerading and host ports.
package network

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/containerd/errdefs"
)

// PortMapping exposes a container port on the node.
type PortMapping struct {
	// Protocol is tcp, udp or sctp (any case; empty means tcp).
	Protocol      string
	ContainerPort int32
	// HostPort 0 means the port is not exposed on the node.
	HostPort int32
	// HostIP limits the mapping to one node address; empty or 0.0.0.0
	// means every address.
	HostIP string
}

// Pod identifies a sandbox to the network plugin.
type Pod struct {
	// ID is the sandbox ID: the key for idempotence and persisted state.
	ID                   string
	Name, Namespace, UID string
	// NetNS is the path of the pod's pinned network namespace, made by
	// netns.Create, so its loopback is already up.
	NetNS        string
	PortMappings []PortMapping
	// Annotations are the pod's; CNI reads its bandwidth limits from them
	// (kubernetes.io/ingress-bandwidth, kubernetes.io/egress-bandwidth).
	Annotations map[string]string
}

// Route is a route inside the pod.
type Route struct {
	Dst net.IPNet
	GW  net.IP
}

// Result is what a pod got from Setup.
type Result struct {
	// Interface is the pod-side interface name.
	Interface string
	// IPs lists the pod's addresses, primary first.
	IPs     []net.IP
	Gateway net.IP
	Routes  []Route
}

// Plugin wires pods into a network.
type Plugin interface {
	Name() string
	// Ready returns nil when pods can get a network; otherwise an error
	// saying why (it drives the CRI NetworkReady condition).
	Ready() error
	// Setup gives the pod its network. Calling it again for a pod ID that
	// is already set up returns the first result.
	Setup(ctx context.Context, pod Pod) (Result, error)
	// Teardown releases everything Setup made for the pod ID. It succeeds
	// for unknown pods and works after the pod's netns is gone.
	Teardown(ctx context.Context, pod Pod) error
	// Status returns what Setup gave the pod, from persisted state, so it
	// works after a daemon restart; ErrNotFound if the pod has no network.
	Status(ctx context.Context, pod Pod) (Result, error)
}

// Errors callers check with errors.Is; each has its errdefs class.
var (
	// ErrInvalid wraps errors caused by bad input; the message names it (errdefs.ErrInvalidArgument).
	ErrInvalid = errdefs.ErrInvalidArgument.WithMessage("invalid network request")
	// ErrNotFound means the pod has no network set up (errdefs.ErrNotFound).
	ErrNotFound = errdefs.ErrNotFound.WithMessage("pod network not found")
	// ErrPortConflict means another pod already maps the host port: the request is valid, the node's
	// state refuses it until that pod is gone (errdefs.ErrFailedPrecondition).
	ErrPortConflict = errdefs.ErrFailedPrecondition.WithMessage("host port already mapped by another pod")
	// ErrNoAddresses means the pod subnet is exhausted (errdefs.ErrResourceExhausted).
	ErrNoAddresses = errdefs.ErrResourceExhausted.WithMessage("no free pod IP address")
)

// podInterface is the pod's interface in either network (the pod side of
// the embedded network's veth), as the kubelet's runtimes name it.
const podInterface = "eth0"

// maxIDLen bounds pod IDs, which name state files (CRI sandbox IDs are 64
// hex characters).
const maxIDLen = 128

func validateID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > maxIDLen {
		return fmt.Errorf("%w: pod ID %q", ErrInvalid, id)
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%w: pod ID %q has character %q", ErrInvalid, id, c)
		}
	}
	return nil
}

// normalizeProtocol returns a port mapping's protocol lower-cased, tcp
// when empty; anything but tcp, udp or sctp is an error.
func normalizeProtocol(p string) (string, error) {
	proto := strings.ToLower(p)
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return "", fmt.Errorf("%w: port mapping protocol %q (want tcp, udp or sctp)", ErrInvalid, p)
	}
	return proto, nil
}

// normalizePorts checks mappings and returns the ones to install: protocol
// lower-cased, HostIP "" for any address, unexposed ports (HostPort 0)
// dropped. Only IPv4 host addresses are supported.
func normalizePorts(in []PortMapping) ([]PortMapping, error) {
	var out []PortMapping
	seen := map[portKey]bool{}
	for _, pm := range in {
		proto, err := normalizeProtocol(pm.Protocol)
		if err != nil {
			return nil, err
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return nil, fmt.Errorf("%w: container port %d out of range 1-65535", ErrInvalid, pm.ContainerPort)
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			return nil, fmt.Errorf("%w: host port %d out of range 0-65535", ErrInvalid, pm.HostPort)
		}
		if pm.HostPort == 0 {
			continue
		}
		hostIP := pm.HostIP
		if hostIP != "" {
			addr, err := netip.ParseAddr(hostIP)
			if err != nil {
				return nil, fmt.Errorf("%w: host IP %q of port %d is not an IP address", ErrInvalid, pm.HostIP, pm.HostPort)
			}
			if !addr.Is4() {
				return nil, fmt.Errorf("%w: host IP %q of port %d: the embedded network maps IPv4 only", ErrInvalid, pm.HostIP, pm.HostPort)
			}
			hostIP = addr.String()
			if addr.IsUnspecified() {
				hostIP = ""
			}
		}
		n := PortMapping{Protocol: proto, ContainerPort: pm.ContainerPort, HostPort: pm.HostPort, HostIP: hostIP}
		k := keyOf(n)
		if seen[k] {
			return nil, fmt.Errorf("%w: host port %s/%d mapped twice", ErrInvalid, proto, pm.HostPort)
		}
		seen[k] = true
		out = append(out, n)
	}
	return out, nil
}

// portKey identifies a host port binding; hostIP "" is every address.
type portKey struct {
	proto  string
	hostIP string
	port   int32
}

func keyOf(pm PortMapping) portKey {
	return portKey{proto: pm.Protocol, hostIP: pm.HostIP, port: pm.HostPort}
}

// overlaps reports whether two bindings would catch the same packets.
func (k portKey) overlaps(o portKey) bool {
	return k.proto == o.proto && k.port == o.port && (k.hostIP == "" || o.hostIP == "" || k.hostIP == o.hostIP)
}

func (k portKey) String() string {
	ip := k.hostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return fmt.Sprintf("%s %s:%d", k.proto, ip, k.port)
}
