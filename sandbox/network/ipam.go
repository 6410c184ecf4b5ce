package network

import (
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

// ipam hands out pod IPs from one IPv4 subnet at a time.
//
// Every allocation is a file named after the IP and holding the pod ID and
// the subnet it came from, created with link(2) from a complete temp file: the name appears
// atomically with its content, and only if no other allocation holds it, so
// an IP is never handed out twice, even across restarts. Allocation goes
// round-robin from the last IP handed out (persisted too), so a released IP
// is not reused at once, while stale connections to it may still be open.
//
// The subnet's first address is the gateway; the network and broadcast
// addresses are never handed out. Allocations from earlier subnets stay
// valid until released.
type ipam struct {
	dir string

	mu     sync.Mutex
	subnet netip.Prefix
	byIP   map[netip.Addr]allocation
	byPod  map[string][]netip.Addr
}

// allocation is one allocated address.
type allocation struct {
	pod    string
	subnet netip.Prefix
}

func (al allocation) encode() string { return al.pod + "\n" + al.subnet.String() + "\n" }

// decodeAllocation parses an allocation file. A file without a valid
// subnet line still holds its IP; its subnet is then invalid.
func decodeAllocation(b []byte) allocation {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	al := allocation{pod: strings.TrimSpace(lines[0])}
	if len(lines) > 1 {
		al.subnet, _ = netip.ParsePrefix(strings.TrimSpace(lines[1]))
	}
	return al
}

// openIPAM loads the allocations persisted in dir.
func openIPAM(dir string, subnet netip.Prefix) (*ipam, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create IPAM dir: %w", err)
	}
	a := &ipam{dir: dir, subnet: subnet, byIP: map[netip.Addr]allocation{}, byPod: map[string][]netip.Addr{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read IPAM dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		ip, err := netip.ParseAddr(name)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read IP allocation %s: %w", name, err)
		}
		a.record(ip, decodeAllocation(b))
	}
	return a, nil
}

// Preconditions: a.mu held, or a not shared yet.
func (a *ipam) record(ip netip.Addr, al allocation) {
	a.byIP[ip] = al
	a.byPod[al.pod] = append(a.byPod[al.pod], ip)
}

// gateway returns the gateway address of subnet, with its prefix length.
func gateway(subnet netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(subnet.Masked().Addr().Next(), subnet.Bits())
}

// validSubnet checks that subnet can serve as a pod range.
func validSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %q is not a CIDR", ErrInvalid, s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %q: the embedded network is IPv4 only", ErrInvalid, s)
	}
	if p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %q is smaller than a /30", ErrInvalid, s)
	}
	return p.Masked(), nil
}

func (a *ipam) setSubnet(p netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subnet = p
}

func (a *ipam) currentSubnet() netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.subnet
}

// subnets returns the subnets of all allocations, and the current one.
func (a *ipam) subnets() []netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	set := map[netip.Prefix]bool{a.subnet: true}
	out := []netip.Prefix{a.subnet}
	for _, al := range a.byIP {
		if al.subnet.IsValid() && !set[al.subnet] {
			set[al.subnet] = true
			out = append(out, al.subnet)
		}
	}
	return out
}

// allocate returns the pod's address and the subnet it belongs to,
// allocating one from the current subnet if the pod has none (or only one
// whose subnet is unknown, which is then released).
func (a *ipam) allocate(pod string) (ip netip.Addr, subnet netip.Prefix, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ip := range a.byPod[pod] {
		if al := a.byIP[ip]; al.subnet.IsValid() && al.subnet.Contains(ip) {
			return ip, al.subnet, nil
		}
	}
	if err := a.releaseLocked(pod); err != nil {
		return netip.Addr{}, netip.Prefix{}, err
	}
	s := a.subnet
	first := s.Addr().Next().Next() // after network address and gateway
	last := lastAddr(s).Prev()      // before broadcast
	start := first
	if prev, ok := a.lastReserved(s); ok && prev.Compare(first) >= 0 && prev.Compare(last) < 0 {
		start = prev.Next()
	}
	ip = start
	for {
		if _, taken := a.byIP[ip]; !taken {
			al := allocation{pod: pod, subnet: s}
			err := a.claim(ip, al)
			if err == nil {
				a.record(ip, al)
				a.saveLastReserved(s, ip)
				return ip, s, nil
			}
			if !errors.Is(err, fs.ErrExist) {
				return netip.Addr{}, netip.Prefix{}, err
			}
			// Claimed behind our back (a file restored by hand): respect it.
			if b, rerr := os.ReadFile(filepath.Join(a.dir, ip.String())); rerr == nil {
				a.record(ip, decodeAllocation(b))
			}
		}
		if ip == last {
			ip = first
		} else {
			ip = ip.Next()
		}
		if ip == start {
			return netip.Addr{}, netip.Prefix{}, fmt.Errorf("allocate IP in %s for pod %q: %w", s, pod, ErrNoAddresses)
		}
	}
}

// claim creates the allocation file for ip, failing with fs.ErrExist if
// it is taken.
func (a *ipam) claim(ip netip.Addr, al allocation) error {
	tmp, err := os.CreateTemp(a.dir, ".claim*")
	if err != nil {
		return fmt.Errorf("allocate IP %s: %w", ip, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(al.encode())
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("allocate IP %s: %w", ip, werr)
	}
	if err := os.Link(tmp.Name(), filepath.Join(a.dir, ip.String())); err != nil {
		return fmt.Errorf("allocate IP %s: %w", ip, err)
	}
	return nil
}

// release frees every address of the pod. Releasing a pod with none is
// not an error.
func (a *ipam) release(pod string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.releaseLocked(pod)
}

// Preconditions: a.mu held.
func (a *ipam) releaseLocked(pod string) error {
	for _, ip := range a.byPod[pod] {
		if err := os.Remove(filepath.Join(a.dir, ip.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("release IP %s of pod %q: %w", ip, pod, err)
		}
		delete(a.byIP, ip)
	}
	delete(a.byPod, pod)
	return nil
}

func lastReservedFile(s netip.Prefix) string {
	return "last_reserved_" + strings.ReplaceAll(s.String(), "/", "_")
}

// Preconditions: a.mu held.
func (a *ipam) lastReserved(s netip.Prefix) (netip.Addr, bool) {
	b, err := os.ReadFile(filepath.Join(a.dir, lastReservedFile(s)))
	if err != nil {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	return ip, err == nil && s.Contains(ip)
}

// saveLastReserved is best effort: losing it only makes the next
// allocation start from the subnet's beginning.
//
// Preconditions: a.mu held.
func (a *ipam) saveLastReserved(s netip.Prefix, ip netip.Addr) {
	_ = atomicfile.Write(filepath.Join(a.dir, lastReservedFile(s)), []byte(ip.String()+"\n"), 0o600)
}

// lastAddr is the broadcast address of s.
func lastAddr(s netip.Prefix) netip.Addr {
	b := s.Masked().Addr().As4()
	hostBits := 32 - s.Bits()
	for i := 3; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		b[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	return netip.AddrFrom4(b)
}
