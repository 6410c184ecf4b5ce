package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// fakeCNILib records the plugin invocations libcni would make and keeps
// an attachment cache as libcni does.
type fakeCNILib struct {
	mu     sync.Mutex
	calls  []string
	addErr error
	delErr error
	// adds holds the runtime conf of each ADD, by pod ID.
	adds  map[string]*libcni.RuntimeConf
	cache map[string]*libcni.NetworkAttachment
}

func newFakeCNILib() *fakeCNILib {
	return &fakeCNILib{adds: map[string]*libcni.RuntimeConf{}, cache: map[string]*libcni.NetworkAttachment{}}
}

func (f *fakeCNILib) result(id string) types.Result {
	podIf := 1
	_, ipn, _ := net.ParseCIDR("10.22.0.7/24")
	ipn.IP = net.ParseIP("10.22.0.7").To4()
	_, def, _ := net.ParseCIDR("0.0.0.0/0")
	return &current.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*current.Interface{{Name: "cni0"}, {Name: "eth0", Sandbox: "/ns/" + id}},
		IPs:        []*current.IPConfig{{Interface: &podIf, Address: *ipn, Gateway: net.ParseIP("10.22.0.1")}},
		Routes:     []*types.Route{{Dst: *def, GW: net.ParseIP("10.22.0.1")}},
	}
}

func (f *fakeCNILib) AddNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("ADD %s %s %s", list.Name, rt.ContainerID, rt.IfName))
	f.adds[rt.ContainerID] = rt
	if f.addErr != nil {
		return nil, f.addErr
	}
	f.cache[rt.ContainerID] = &libcni.NetworkAttachment{
		ContainerID: rt.ContainerID, Network: list.Name, IfName: rt.IfName, Config: list.Bytes,
		NetNS: rt.NetNS, CniArgs: rt.Args, CapabilityArgs: rt.CapabilityArgs,
	}
	return f.result(rt.ContainerID), nil
}

func (f *fakeCNILib) CheckNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("CHECK %s %s", list.Name, rt.ContainerID))
	return nil
}

func (f *fakeCNILib) DelNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("DEL %s %s", list.Name, rt.ContainerID))
	if f.delErr != nil {
		return f.delErr
	}
	delete(f.cache, rt.ContainerID)
	return nil
}

func (f *fakeCNILib) GetNetworkListCachedResult(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cache[rt.ContainerID] == nil {
		return nil, nil
	}
	return f.result(rt.ContainerID), nil
}

func (f *fakeCNILib) GetCachedAttachments(id string) ([]*libcni.NetworkAttachment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.cache[id]; a != nil {
		return []*libcni.NetworkAttachment{a}, nil
	}
	return nil, nil
}

func (f *fakeCNILib) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

const testConflist = `{
  "cniVersion": "1.0.0",
  "name": "testnet",
  "plugins": [
    {"type": "bridge", "bridge": "cni-test", "ipam": {"type": "host-local", "subnet": "10.22.0.0/24"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`

type fakeCNIEnv struct {
	c       *CNI
	lib     *fakeCNILib
	confDir string
	cache   string
	// installed are the plugin binaries findPlugin finds.
	installed map[string]bool
}

func newFakeCNI(t *testing.T) *fakeCNIEnv {
	t.Helper()
	f := &fakeCNIEnv{
		lib: newFakeCNILib(), confDir: t.TempDir(), cache: t.TempDir(),
		installed: map[string]bool{"bridge": true, "portmap": true, "host-local": true},
	}
	f.writeConf(t, "10-test.conflist", testConflist)
	f.c = f.reopen(t)
	return f
}

// reopen builds a CNI on the same directories, as a restarted daemon does.
func (f *fakeCNIEnv) reopen(t *testing.T) *CNI {
	t.Helper()
	c, err := newCNI(CNIConfig{ConfDir: f.confDir, BinDirs: []string{"/opt/cni/bin"}, CacheDir: f.cache}, f.lib,
		func(name string, dirs []string) (string, error) {
			if f.installed[name] {
				return filepath.Join(dirs[0], name), nil
			}
			return "", fmt.Errorf("failed to find plugin %q in path %s", name, dirs)
		})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeCNIEnv) writeConf(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.confDir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func cniPod(id string, pms ...PortMapping) Pod {
	return Pod{ID: id, Name: "name-" + id, Namespace: "ns", UID: "uid-" + id, NetNS: "/ns/" + id, PortMappings: pms}
}

func TestCNISetupTeardown(t *testing.T) {
	f := newFakeCNI(t)
	p := cniPod("p1", PortMapping{ContainerPort: 80, HostPort: 8080}, PortMapping{ContainerPort: 81, Protocol: "UDP"})
	res, err := f.c.Setup(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if res.Interface != "eth0" || len(res.IPs) != 1 || res.IPs[0].String() != "10.22.0.7" || res.Gateway.String() != "10.22.0.1" || len(res.Routes) != 1 {
		t.Fatalf("result %+v", res)
	}
	rt := f.lib.adds["p1"]
	wantArgs := [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "ns"}, {"K8S_POD_NAME", "name-p1"},
		{"K8S_POD_INFRA_CONTAINER_ID", "p1"}, {"K8S_POD_UID", "uid-p1"}}
	if !reflect.DeepEqual(rt.Args, wantArgs) || rt.NetNS != "" && rt.NetNS != p.NetNS || rt.IfName != "eth0" {
		t.Errorf("runtime conf %+v", rt)
	}
	// Only the mapping with a host port is offered.
	pm, _ := json.Marshal(rt.CapabilityArgs["portMappings"])
	if string(pm) != `[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]` {
		t.Errorf("portMappings capability %s", pm)
	}
	if _, ok := rt.CapabilityArgs["ipRanges"]; ok {
		t.Error("ipRanges offered without a pod CIDR")
	}

	again, err := f.c.Setup(ctx, p)
	if err != nil || !reflect.DeepEqual(again, res) {
		t.Fatalf("second Setup: %+v, %v; want the first result", again, err)
	}
	st, err := f.c.Status(ctx, p)
	if err != nil || !reflect.DeepEqual(st, res) {
		t.Fatalf("Status: %+v, %v", st, err)
	}
	if err := f.c.Check(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Teardown(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Teardown(ctx, p); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	if got, want := f.lib.takeCalls(), []string{"ADD testnet p1 eth0", "CHECK testnet p1", "DEL testnet p1"}; !slices.Equal(got, want) {
		t.Errorf("plugin calls %q, want %q", got, want)
	}
	if _, err := f.c.Status(ctx, p); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status after Teardown: %v, want ErrNotFound", err)
	}
	if left, _ := os.ReadDir(f.c.records.dir); len(left) != 0 {
		t.Errorf("records left: %v", left)
	}
}

// DEL after a restart uses what ADD used, even when the conf dir changed
// meanwhile.
func TestCNITeardownAfterRestartUsesCachedConfig(t *testing.T) {
	f := newFakeCNI(t)
	if _, err := f.c.Setup(ctx, cniPod("p1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.confDir, "10-test.conflist")); err != nil {
		t.Fatal(err)
	}
	f.writeConf(t, "10-other.conflist", strings.Replace(testConflist, "testnet", "othernet", 1))
	c2 := f.reopen(t)
	if _, err := c2.Status(ctx, cniPod("p1")); err != nil {
		t.Fatalf("Status after restart: %v", err)
	}
	if err := c2.Teardown(ctx, cniPod("p1")); err != nil {
		t.Fatal(err)
	}
	if got, want := f.lib.takeCalls(), []string{"ADD testnet p1 eth0", "DEL testnet p1"}; !slices.Equal(got, want) {
		t.Errorf("plugin calls %q, want %q", got, want)
	}
}

// A daemon that died during ADD left a record but no cached attachment:
// Teardown, and a new Setup, still DEL with the recorded configuration.
func TestCNIInterruptedSetup(t *testing.T) {
	for _, then := range []string{"teardown", "setup"} {
		t.Run(then, func(t *testing.T) {
			f := newFakeCNI(t)
			rec := &cniRecord{ID: "p1", ConfFile: "x.conflist", Config: []byte(testConflist), NetNS: "/ns/p1", IfName: "eth0"}
			if err := f.c.records.save(rec.ID, rec); err != nil {
				t.Fatal(err)
			}
			var want []string
			if then == "teardown" {
				if err := f.c.Teardown(ctx, cniPod("p1")); err != nil {
					t.Fatal(err)
				}
				want = []string{"DEL testnet p1"}
			} else {
				if _, err := f.c.Setup(ctx, cniPod("p1")); err != nil {
					t.Fatal(err)
				}
				want = []string{"DEL testnet p1", "ADD testnet p1 eth0"}
			}
			if got := f.lib.takeCalls(); !slices.Equal(got, want) {
				t.Errorf("plugin calls %q, want %q", got, want)
			}
		})
	}
}

func TestCNISetupFailureLeavesNothing(t *testing.T) {
	f := newFakeCNI(t)
	f.lib.addErr = errors.New("plugin bridge: boom")
	_, err := f.c.Setup(ctx, cniPod("p1"))
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "10-test.conflist") {
		t.Fatalf("error %v, want the plugin's error naming the conf file", err)
	}
	if got, want := f.lib.takeCalls(), []string{"ADD testnet p1 eth0", "DEL testnet p1"}; !slices.Equal(got, want) {
		t.Errorf("plugin calls %q, want ADD then the DEL that undoes it", got)
	}
	if left, _ := os.ReadDir(f.c.records.dir); len(left) != 0 {
		t.Errorf("records left: %v", left)
	}
	// A failing undo is reported with the cause.
	f.lib.delErr = errors.New("del failed too")
	_, err = f.c.Setup(ctx, cniPod("p2"))
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "del failed too") {
		t.Fatalf("error %v, want both failures", err)
	}
}

func TestCNIReadyAndBrokenConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		// missing plugins
		missing  string
		mentions []string
	}{
		{name: "ok", files: map[string]string{"10-test.conflist": testConflist}},
		{name: "no config", mentions: []string{"no network configuration"}},
		{name: "broken first file", files: map[string]string{"05-bad.conflist": "{not json", "10-test.conflist": testConflist},
			mentions: []string{"05-bad.conflist"}},
		{name: "no plugins", files: map[string]string{"10-x.conflist": `{"cniVersion": "1.0.0", "name": "x", "plugins": []}`},
			mentions: []string{"10-x.conflist"}},
		{name: "plugin missing", files: map[string]string{"10-test.conflist": testConflist}, missing: "portmap",
			mentions: []string{"10-test.conflist", `"portmap"`, "/opt/cni/bin"}},
		{name: "single .conf", files: map[string]string{"10-one.conf": `{"cniVersion": "1.0.0", "name": "one", "type": "bridge"}`, "20-test.conflist": "{"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCNI(t)
			_ = os.Remove(filepath.Join(f.confDir, "10-test.conflist"))
			for n, c := range tc.files {
				f.writeConf(t, n, c)
			}
			delete(f.installed, tc.missing)
			err := f.c.Ready()
			if len(tc.mentions) == 0 {
				if err != nil {
					t.Fatalf("Ready: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCNIConfig) {
				t.Fatalf("Ready: %v, want ErrCNIConfig", err)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Ready error %q does not mention %q", err, m)
				}
			}
			if tc.missing != "" {
				return // Setup finds plugins through libcni, faked here
			}
			_, err = f.c.Setup(ctx, cniPod("p1"))
			if !errors.Is(err, ErrCNIConfig) {
				t.Fatalf("Setup: %v, want ErrCNIConfig", err)
			}
			if calls := f.lib.takeCalls(); len(calls) != 0 {
				t.Errorf("plugins called: %q", calls)
			}
			if left, _ := os.ReadDir(f.c.records.dir); len(left) != 0 {
				t.Errorf("records left: %v", left)
			}
		})
	}
}

func TestCNIPodCIDR(t *testing.T) {
	f := newFakeCNI(t)
	if err := f.c.UpdatePodCIDR("not-a-cidr"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad CIDR: %v", err)
	}
	if err := f.c.UpdatePodCIDR("10.30.1.0/24, fd00:1::/64"); err != nil {
		t.Fatal(err)
	}
	// Kept across a restart; an empty update changes nothing.
	c2 := f.reopen(t)
	if err := c2.UpdatePodCIDR(""); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Setup(ctx, cniPod("p1")); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(f.lib.adds["p1"].CapabilityArgs["ipRanges"])
	if want := `[[{"subnet":"10.30.1.0/24"}],[{"subnet":"fd00:1::/64"}]]`; string(got) != want {
		t.Errorf("ipRanges %s, want %s", got, want)
	}
}

func TestCNIBandwidth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		want    *cniBandwidth
		wantErr string
	}{
		{name: "none", ann: map[string]string{"other": "x"}},
		{name: "ingress", ann: map[string]string{AnnotationIngressBandwidth: "10M"},
			want: &cniBandwidth{IngressRate: 10_000_000, IngressBurst: math.MaxUint32}},
		{name: "both binary", ann: map[string]string{AnnotationIngressBandwidth: "1Mi", AnnotationEgressBandwidth: "2k"},
			want: &cniBandwidth{IngressRate: 1 << 20, IngressBurst: math.MaxUint32, EgressRate: 2000, EgressBurst: math.MaxUint32}},
		{name: "not a quantity", ann: map[string]string{AnnotationEgressBandwidth: "fast"}, wantErr: AnnotationEgressBandwidth},
		{name: "too small", ann: map[string]string{AnnotationIngressBandwidth: "10"}, wantErr: "outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bandwidthOf(tc.ann)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want ErrInvalid mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestCNIInvalidInput(t *testing.T) {
	f := newFakeCNI(t)
	for _, p := range []Pod{
		{ID: "../x", NetNS: "/ns"},
		{ID: "p", NetNS: ""},
		cniPod("p", PortMapping{ContainerPort: 80, HostPort: 1, Protocol: "icmp"}),
		cniPod("p", PortMapping{ContainerPort: 80, HostPort: 1, HostIP: "nope"}),
	} {
		if _, err := f.c.Setup(ctx, p); !errors.Is(err, ErrInvalid) {
			t.Errorf("Setup %+v: %v, want ErrInvalid", p, err)
		}
	}
	if calls := f.lib.takeCalls(); len(calls) != 0 {
		t.Errorf("plugins called: %q", calls)
	}
	if _, err := newCNI(CNIConfig{CacheDir: "rel"}, f.lib, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("relative cache dir: %v", err)
	}
}
