package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// fakeLinks records what the embedded network asks of the kernel and
// keeps just enough state to answer linkExists.
type fakeLinks struct {
	mu      sync.Mutex
	calls   []string
	links   map[string]bool
	gws     map[netip.Prefix]bool
	sysctls map[string]string
	podLink map[string]podLink // by host veth
	mtu     int
	failAdd error
}

func newFakeLinks() *fakeLinks {
	return &fakeLinks{
		links: map[string]bool{}, gws: map[netip.Prefix]bool{}, sysctls: map[string]string{},
		podLink: map[string]podLink{}, mtu: 1400,
	}
}

func (f *fakeLinks) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeLinks) ensureBridge(name string, mtu int, gateways []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ensureBridge %s %d %v", name, mtu, gateways)
	f.links[name] = true
	for _, g := range gateways {
		f.gws[g] = true
	}
	return nil
}

func (f *fakeLinks) addPodLink(l podLink) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("addPodLink %s %s %s", l.HostVeth, l.NetNS, l.Addr)
	if f.failAdd != nil {
		return f.failAdd
	}
	if f.links[l.HostVeth] {
		return errors.New("file exists")
	}
	if !f.links[l.Bridge] {
		return errors.New("no bridge")
	}
	f.links[l.HostVeth] = true
	f.podLink[l.HostVeth] = l
	return nil
}

func (f *fakeLinks) linkExists(name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.links[name], nil
}

func (f *fakeLinks) delLink(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.links[name] {
		f.record("delLink %s", name)
	}
	delete(f.links, name)
	delete(f.podLink, name)
	return nil
}

func (f *fakeLinks) defaultMTU() (int, error) { return f.mtu, nil }

func (f *fakeLinks) setSysctl(key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sysctls[key] = value
	return nil
}

func (f *fakeLinks) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// fakeIPT is an in-memory iptables with the semantics the firewall relies
// on: chains must exist, a referenced chain cannot be deleted.
type fakeIPT struct {
	mu     sync.Mutex
	tables map[string]map[string][]string
	calls  int
	// failOn makes the first call whose description contains it fail.
	failOn string
}

func newFakeIPT() *fakeIPT {
	return &fakeIPT{tables: map[string]map[string][]string{
		"nat":    {"PREROUTING": nil, "OUTPUT": nil, "POSTROUTING": nil, "INPUT": nil},
		"filter": {"INPUT": nil, "FORWARD": nil, "OUTPUT": nil},
	}}
}

var builtinTarget = map[string]bool{"ACCEPT": true, "DROP": true, "MASQUERADE": true, "DNAT": true, "RETURN": true}

var builtin = map[string]bool{"PREROUTING": true, "OUTPUT": true, "POSTROUTING": true, "INPUT": true, "FORWARD": true}

func (f *fakeIPT) op(desc string) error {
	f.calls++
	if f.failOn != "" && strings.Contains(desc, f.failOn) {
		f.failOn = ""
		return fmt.Errorf("injected failure: %s", desc)
	}
	return nil
}

func (f *fakeIPT) chain(table, chain string) ([]string, error) {
	rules, ok := f.tables[table][chain]
	if !ok {
		return nil, fmt.Errorf("no chain %s/%s", table, chain)
	}
	return rules, nil
}

func (f *fakeIPT) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	_, ok := f.tables[table][chain]
	return ok, nil
}

func (f *fakeIPT) ListChains(table string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var out []string
	for c := range f.tables[table] {
		out = append(out, c)
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakeIPT) NewChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("NewChain " + table + " " + chain); err != nil {
		return err
	}
	if _, ok := f.tables[table][chain]; ok {
		return fmt.Errorf("chain %s/%s exists", table, chain)
	}
	f.tables[table][chain] = nil
	return nil
}

func (f *fakeIPT) ClearChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("ClearChain " + table + " " + chain); err != nil {
		return err
	}
	f.tables[table][chain] = nil
	return nil
}

func (f *fakeIPT) ClearAndDeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("ClearAndDeleteChain " + table + " " + chain); err != nil {
		return err
	}
	if _, ok := f.tables[table][chain]; !ok {
		return nil
	}
	for c, rules := range f.tables[table] {
		for _, r := range rules {
			if c != chain && strings.HasSuffix(r, "-j "+chain) {
				return fmt.Errorf("chain %s/%s still referenced from %s", table, chain, c)
			}
		}
	}
	delete(f.tables[table], chain)
	return nil
}

func (f *fakeIPT) Append(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := strings.Join(spec, " ")
	if err := f.op("Append " + table + " " + chain + " " + r); err != nil {
		return err
	}
	rules, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	f.tables[table][chain] = append(rules, r)
	return nil
}

func (f *fakeIPT) Exists(table, chain string, spec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	rules, err := f.chain(table, chain)
	if err != nil {
		return false, err
	}
	return slices.Contains(rules, strings.Join(spec, " ")), nil
}

func (f *fakeIPT) AppendUnique(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := strings.Join(spec, " ")
	if err := f.op("AppendUnique " + table + " " + chain + " " + r); err != nil {
		return err
	}
	rules, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if !slices.Contains(rules, r) {
		f.tables[table][chain] = append(rules, r)
	}
	return nil
}

func (f *fakeIPT) InsertUnique(table, chain string, pos int, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := strings.Join(spec, " ")
	if err := f.op("InsertUnique " + table + " " + chain + " " + r); err != nil {
		return err
	}
	rules, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if !slices.Contains(rules, r) {
		f.tables[table][chain] = slices.Insert(rules, pos-1, r)
	}
	return nil
}

func (f *fakeIPT) DeleteIfExists(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := strings.Join(spec, " ")
	if err := f.op("DeleteIfExists " + table + " " + chain + " " + r); err != nil {
		return err
	}
	rules, ok := f.tables[table][chain]
	if !ok {
		return fmt.Errorf("no chain %s/%s", table, chain)
	}
	// Like iptables -C, a rule naming a missing target cannot be checked.
	if target := spec[len(spec)-1]; spec[len(spec)-2] == "-j" && !builtinTarget[target] {
		if _, ok := f.tables[table][target]; !ok {
			return fmt.Errorf("chain %s does not exist", target)
		}
	}
	if i := slices.Index(rules, r); i >= 0 {
		f.tables[table][chain] = slices.Delete(rules, i, i+1)
	}
	return nil
}

func (f *fakeIPT) rules(table, chain string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tables[table][chain])
}

func (f *fakeIPT) hasChain(table, chain string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.tables[table][chain]
	return ok
}

func (f *fakeIPT) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// userChains lists the non-built-in chains left, as table/chain.
func (f *fakeIPT) userChains() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for t, chains := range f.tables {
		for c := range chains {
			if !builtin[c] {
				out = append(out, t+"/"+c)
			}
		}
	}
	return out
}
