package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/warmpod/warmpod/runtime/atomicfile"
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

// podInterface is the pod side of every veth.
const podInterface = "eth0"

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

// stateStore keeps one JSON file per pod in dir.
type stateStore struct {
	dir string
}

func (s stateStore) path(id string) string { return filepath.Join(s.dir, id+".json") }

// load returns ErrNotFound when the pod has no state.
func (s stateStore) load(id string) (*podState, error) {
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read network state of pod %q: %w", id, err)
	}
	var st podState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse network state of pod %q: %w", id, err)
	}
	return &st, nil
}

func (s stateStore) save(st *podState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path(st.ID), b, 0o600); err != nil {
		return fmt.Errorf("save network state of pod %q: %w", st.ID, err)
	}
	return nil
}

func (s stateStore) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove network state of pod %q: %w", id, err)
	}
	return nil
}

// list reads every pod's state. Leftover temp files from a crash are
// removed.
func (s stateStore) list() ([]*podState, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list network states: %w", err)
	}
	var out []*podState
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			_ = os.Remove(filepath.Join(s.dir, name))
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok {
			continue
		}
		st, err := s.load(id)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
