package cgroup

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	systemdDbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/opencontainers/cgroups"
	sdcgroups "github.com/opencontainers/cgroups/systemd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeUnits records calls and plays systemd on a fake tree: a started
// slice gets its directory, a stopped one loses it.
type fakeUnits struct {
	root  string
	calls []string
	props map[string][]systemdDbus.Property
	units map[string]bool
}

func newFakeUnits(root string) *fakeUnits {
	return &fakeUnits{root: root, props: map[string][]systemdDbus.Property{}, units: map[string]bool{}}
}

func (f *fakeUnits) startSlice(_ context.Context, name string, props []systemdDbus.Property) error {
	f.calls = append(f.calls, "start "+name)
	if f.units[name] {
		return errUnitExists
	}
	f.units[name] = true
	f.props[name] = props
	path, err := sdcgroups.ExpandSlice(name)
	if err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(f.root, path), 0o755)
}

func (f *fakeUnits) startScope(_ context.Context, name, slice string, pid int, props []systemdDbus.Property) error {
	f.calls = append(f.calls, "scope "+name+" in "+slice)
	f.props[name] = props
	return nil
}

func (f *fakeUnits) set(_ context.Context, name string, props []systemdDbus.Property) error {
	f.calls = append(f.calls, "set "+name)
	f.props[name] = append(f.props[name], props...)
	return nil
}

func (f *fakeUnits) stop(_ context.Context, name string) error {
	f.calls = append(f.calls, "stop "+name)
	if !f.units[name] {
		return nil
	}
	delete(f.units, name)
	path, _ := sdcgroups.ExpandSlice(name)
	// A real cgroup directory goes with its control files.
	return os.RemoveAll(filepath.Join(f.root, path))
}

// prop finds the last value given for a property.
func prop(props []systemdDbus.Property, name string) any {
	var v any
	for _, p := range props {
		if p.Name == name {
			v = p.Value.Value()
		}
	}
	return v
}

func TestSliceDriverOnFakeTree(t *testing.T) {
	requireRootForFakeTree(t)
	m := fakeV2(t)
	writeFiles(t, m.mountpoint, map[string]string{
		"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cgroup.controllers":     "cpuset cpu io memory pids\n",
		"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cgroup.subtree_control": "",
	})
	u := newFakeUnits(m.mountpoint)
	s := sliceDriver{u: u, m: m, v2: true}
	const slice = "kubepods-burstable-pod1-abc.slice"
	dir := filepath.Join(m.mountpoint, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", slice)

	got, err := s.create(slice, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))}})
	if err != nil || got != slice {
		t.Fatalf("create = %q, %v", got, err)
	}
	props := u.props[slice]
	for name, want := range map[string]any{
		"Wants":               []string{"kubepods-burstable-pod1.slice"},
		"DefaultDependencies": false,
		"MemoryAccounting":    true,
		"MemoryMax":           uint64(64 << 20),
	} {
		if v := prop(props, name); !reflect.DeepEqual(v, want) {
			t.Errorf("property %s = %v, want %v", name, v, want)
		}
	}
	// The limit is also in the cgroup filesystem.
	if v := readTrim(t, filepath.Join(dir, "memory.max")); v != "67108864" {
		t.Errorf("memory.max = %q", v)
	}

	// A retried create applies the limits to the slice that is there.
	if _, err := s.create(slice, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(32 << 20))}}); err != nil {
		t.Fatalf("second create: %v", err)
	}
	if v := prop(u.props[slice], "MemoryMax"); v != uint64(32<<20) {
		t.Errorf("MemoryMax after the second create = %v", v)
	}

	if err := s.update(slice, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(50))}}); err != nil {
		t.Fatal(err)
	}
	if v := prop(u.props[slice], "TasksMax"); v != uint64(50) {
		t.Errorf("TasksMax after update = %v", v)
	}
	if v := readTrim(t, filepath.Join(dir, "pids.max")); v != "50" {
		t.Errorf("pids.max = %q", v)
	}
	if err := s.update("kubepods-burstable-pod1-missing.slice", &specs.LinuxResources{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing slice = %v, want ErrNotFound", err)
	}

	// A slice with a process left is not stopped.
	writeFiles(t, dir, map[string]string{"warmpod-ctr.scope/cgroup.procs": "77\n"})
	u.calls = nil
	if err := s.remove(slice); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("remove of a busy slice = %v, want ErrNotEmpty", err)
	}
	if len(u.calls) != 0 {
		t.Errorf("a busy slice was touched: %v", u.calls)
	}
	if err := os.RemoveAll(filepath.Join(dir, "warmpod-ctr.scope")); err != nil {
		t.Fatal(err)
	}
	if err := s.remove(slice); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(u.calls, []string{"stop " + slice}) {
		t.Errorf("remove called %v", u.calls)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("slice directory left: %v", err)
	}
	// Removing it again succeeds, as CRI's RemovePodSandbox must.
	if err := s.remove(slice); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

func TestUnitProperties(t *testing.T) {
	res := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 30))},
		CPU:    &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(25000)), Period: ptr(uint64(100000))},
		Pids:   &specs.LinuxPids{Limit: ptr(int64(0))},
	}
	for _, tc := range []struct {
		v2   bool
		want map[string]any
	}{
		{false, map[string]any{"MemoryLimit": uint64(1 << 30), "CPUShares": uint64(512), "CPUQuotaPerSecUSec": uint64(250000),
			"CPUQuotaPeriodUSec": uint64(100000), "TasksMax": uint64(math.MaxUint64)}},
		{true, map[string]any{"MemoryMax": uint64(1 << 30), "CPUWeight": cgroups.ConvertCPUSharesToCgroupV2Value(512), "CPUQuotaPerSecUSec": uint64(250000),
			"CPUQuotaPeriodUSec": uint64(100000), "TasksMax": uint64(math.MaxUint64)}},
	} {
		props, err := unitProperties(res, tc.v2)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]any{}
		for _, p := range props {
			got[p.Name] = p.Value.Value()
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("v2=%t: properties %v, want %v", tc.v2, got, tc.want)
		}
	}
	// A quota that is not a whole percent of a CPU is rounded up, as
	// systemd keeps whole percents.
	props, _ := unitProperties(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(12345))}}, true)
	if v := prop(props, "CPUQuotaPerSecUSec"); v != uint64(130000) {
		t.Errorf("CPUQuotaPerSecUSec for 12345/100000 = %v, want 130000", v)
	}
}
