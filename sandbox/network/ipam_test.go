package network

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openTestIPAM(t *testing.T, dir, subnet string) *ipam {
	t.Helper()
	a, err := openIPAM(dir, netip.MustParsePrefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func alloc(t *testing.T, a *ipam, pod string) string {
	t.Helper()
	ip, _, err := a.allocate(pod)
	if err != nil {
		t.Fatalf("allocate %s: %v", pod, err)
	}
	return ip.String()
}

func TestIPAMRoundRobin(t *testing.T) {
	dir := t.TempDir()
	a := openTestIPAM(t, dir, "10.9.0.0/29") // hosts .2-.6 (.1 is the gateway)
	var got []string
	for _, p := range []string{"a", "b", "c"} {
		got = append(got, alloc(t, a, p))
	}
	if strings.Join(got, " ") != "10.9.0.2 10.9.0.3 10.9.0.4" {
		t.Fatalf("first allocations = %v", got)
	}
	if err := a.release("a"); err != nil {
		t.Fatal(err)
	}
	// The freed .2 is not reused while fresher addresses remain.
	if ip := alloc(t, a, "d"); ip != "10.9.0.5" {
		t.Fatalf("after a release got %s, want 10.9.0.5", ip)
	}
	if ip := alloc(t, a, "e"); ip != "10.9.0.6" {
		t.Fatalf("got %s, want 10.9.0.6", ip)
	}
	// Wrap around to the freed address.
	if ip := alloc(t, a, "f"); ip != "10.9.0.2" {
		t.Fatalf("after wrapping got %s, want 10.9.0.2", ip)
	}
	if _, _, err := a.allocate("g"); !errors.Is(err, ErrNoAddresses) {
		t.Fatalf("full subnet: %v, want ErrNoAddresses", err)
	}
	// A pod asking again keeps its address.
	if ip := alloc(t, a, "c"); ip != "10.9.0.4" {
		t.Fatalf("repeat allocation for c = %s", ip)
	}

	// Everything, including where round-robin stands, survives a restart.
	b := openTestIPAM(t, dir, "10.9.0.0/29")
	if err := b.release("d"); err != nil {
		t.Fatal(err)
	}
	if err := b.release("b"); err != nil {
		t.Fatal(err)
	}
	if ip := alloc(t, b, "h"); ip != "10.9.0.3" {
		t.Fatalf("after restart got %s, want 10.9.0.3 (next after .2)", ip)
	}
	if ip := alloc(t, b, "c"); ip != "10.9.0.4" {
		t.Fatalf("c lost its address over the restart: %s", ip)
	}
}

func TestIPAMSmallestSubnet(t *testing.T) {
	a := openTestIPAM(t, t.TempDir(), "10.9.0.0/30")
	if ip := alloc(t, a, "a"); ip != "10.9.0.2" {
		t.Fatalf("got %s", ip)
	}
	if _, _, err := a.allocate("b"); !errors.Is(err, ErrNoAddresses) {
		t.Fatalf("second allocation in a /30: %v", err)
	}
}

// An allocation file that appeared behind the allocator's back (another
// process, a restored backup) is never handed out again.
func TestIPAMRespectsForeignClaim(t *testing.T) {
	dir := t.TempDir()
	a := openTestIPAM(t, dir, "10.9.0.0/24")
	if err := os.WriteFile(filepath.Join(dir, "10.9.0.2"), []byte("other\n10.9.0.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ip := alloc(t, a, "a"); ip != "10.9.0.3" {
		t.Fatalf("got %s, want 10.9.0.3", ip)
	}
	b := openTestIPAM(t, dir, "10.9.0.0/24")
	if err := b.release("other"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "10.9.0.2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("release of the foreign pod left its file: %v", err)
	}
}

func TestIPAMFileFormat(t *testing.T) {
	dir := t.TempDir()
	a := openTestIPAM(t, dir, "10.9.0.0/24")
	alloc(t, a, "pod-1")
	b, err := os.ReadFile(filepath.Join(dir, "10.9.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "pod-1\n10.9.0.0/24\n" {
		t.Fatalf("allocation file = %q", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temp file %s left", e.Name())
		}
	}
}

// An allocation from an earlier subnet keeps its own subnet.
func TestIPAMSubnetChange(t *testing.T) {
	dir := t.TempDir()
	a := openTestIPAM(t, dir, "10.9.0.0/24")
	alloc(t, a, "old")
	a.setSubnet(netip.MustParsePrefix("10.10.0.0/16"))
	ip, s, err := a.allocate("old")
	if err != nil || ip.String() != "10.9.0.2" || s.String() != "10.9.0.0/24" {
		t.Fatalf("old pod = %s in %s, %v", ip, s, err)
	}
	ip, s, err = a.allocate("new")
	if err != nil || ip.String() != "10.10.0.2" || s.String() != "10.10.0.0/16" {
		t.Fatalf("new pod = %s in %s, %v", ip, s, err)
	}
	subnets := openTestIPAM(t, dir, "10.10.0.0/16").subnets()
	if len(subnets) != 2 {
		t.Fatalf("subnets after restart = %v", subnets)
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.88.0.0/16": "10.88.255.255",
		"10.9.0.0/29":  "10.9.0.7",
		"10.9.0.8/30":  "10.9.0.11",
		"10.0.0.0/8":   "10.255.255.255",
	} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
