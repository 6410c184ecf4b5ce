package network

import (
	"fmt"
	"net"
	"net/netip"
)

// podState is what Setup persisted for one pod. It is written before any
// kernel object is made (Complete false) and again when all exist, so after
// a crash Teardown still knows what may need removing.
type podState struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	UID       string `json:"uid,omitempty"`
	NetNS     string `json:"netns"`
	HostVeth  string `json:"hostVeth"`
	// Subnet is the range the IP came from (the pod CIDR may change).
	Subnet       string        `json:"subnet"`
	IP           string        `json:"ip"`
	Gateway      string        `json:"gateway"`
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	Complete     bool          `json:"complete"`
}

func (s *podState) result() (Result, error) {
	ip, err := netip.ParseAddr(s.IP)
	if err != nil {
		return Result{}, fmt.Errorf("state of pod %q: bad IP %q", s.ID, s.IP)
	}
	gw, err := netip.ParseAddr(s.Gateway)
	if err != nil {
		return Result{}, fmt.Errorf("state of pod %q: bad gateway %q", s.ID, s.Gateway)
	}
	return Result{
		Interface: podInterface,
		IPs:       []net.IP{net.IP(ip.AsSlice())},
		Gateway:   net.IP(gw.AsSlice()),
		Routes: []Route{{
			Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			GW:  net.IP(gw.AsSlice()),
		}},
	}, nil
}
