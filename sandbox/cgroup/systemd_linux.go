package cgroup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	systemdDbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"github.com/opencontainers/cgroups"
	sdcgroups "github.com/opencontainers/cgroups/systemd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// jobTimeout bounds how long systemd may take to start or stop a unit.
const jobTimeout = 30 * time.Second

// errUnitExists is what units.startSlice returns for a unit that is
// already there.
var errUnitExists = errors.New("unit exists")

// units is the seam to systemd: transient slices, started, changed and
// stopped through its D-Bus API.
type units interface {
	// startSlice starts a transient slice; errUnitExists if it exists.
	startSlice(ctx context.Context, name string, props []systemdDbus.Property) error
	// set changes properties of a running unit.
	set(ctx context.Context, name string, props []systemdDbus.Property) error
	// startScope starts a transient scope in slice holding pid.
	startScope(ctx context.Context, name, slice string, pid int, props []systemdDbus.Property) error
	// stop stops a unit and waits for it; a unit that is not there is not
	// an error.
	stop(ctx context.Context, name string) error
}

// sliceDriver creates the pod slices of the systemd driver. Limits go both to
// systemd, as unit properties (it would otherwise restore its own values
// whenever it re-applies a unit's settings, at a daemon-reload for one),
// and, through the manager of the host's cgroup mode, to the cgroup
// filesystem, which also takes the limits systemd has no property for.
type sliceDriver struct {
	u units
	m manager
	// v2 selects the unified hierarchy's property names.
	v2 bool
}

func (s sliceDriver) create(slice string, res *specs.LinuxResources) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	path, err := sdcgroups.ExpandSlice(slice)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	props := []systemdDbus.Property{
		systemdDbus.PropDescription("warmpod pod cgroup " + slice),
		// A slice's parent is the slice its name descends from.
		systemdDbus.PropWants(parentSlice(slice)),
		newProp("DefaultDependencies", false),
		newProp("MemoryAccounting", true),
		newProp("CPUAccounting", true),
		newProp("TasksAccounting", true),
	}
	if s.v2 {
		props = append(props, newProp("IOAccounting", true))
	} else {
		props = append(props, newProp("BlockIOAccounting", true))
	}
	if res == nil {
		res = &specs.LinuxResources{}
	}
	limits, err := unitProperties(res, s.v2)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	existed := false
	switch err := s.u.startSlice(ctx, slice, append(props, limits...)); {
	case errors.Is(err, errUnitExists):
		// A retried RunPodSandbox: apply res to the slice that is there.
		existed = true
		if err := s.u.set(ctx, slice, limits); err != nil {
			return "", fmt.Errorf("create pod slice %s: %w", slice, err)
		}
	case err != nil:
		return "", fmt.Errorf("create pod slice %s: %w", slice, err)
	}
	// The controllers systemd does not manage (cpuset, hugetlb, ...) get
	// the cgroup, and the limits, from the cgroup filesystem.
	if err := s.m.create(path, res); err != nil {
		if !existed {
			_ = s.u.stop(ctx, slice)
		}
		return "", fmt.Errorf("create pod slice %s: %w", slice, err)
	}
	return slice, nil
}

func (s sliceDriver) update(slice string, res *specs.LinuxResources) error {
	path, err := sdcgroups.ExpandSlice(slice)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	limits, err := unitProperties(res, s.v2)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ok, err := s.m.exists(path)
	if err != nil {
		return fmt.Errorf("update pod slice %s: %w", slice, err)
	}
	if !ok {
		return fmt.Errorf("update pod slice %s: %w", slice, ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	if len(limits) > 0 {
		if err := s.u.set(ctx, slice, limits); err != nil {
			return fmt.Errorf("update pod slice %s: %w", slice, err)
		}
	}
	if err := s.m.update(path, res); err != nil {
		return fmt.Errorf("update pod slice %s: %w", slice, err)
	}
	return nil
}

// remove stops the slice once nothing runs in it, then removes what
// systemd did not make and so does not remove: the cgroups libcontainer
// created in the hierarchies systemd leaves alone.
func (s sliceDriver) remove(slice string) error {
	path, err := sdcgroups.ExpandSlice(slice)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ok, err := s.m.exists(path)
	if err != nil {
		return fmt.Errorf("delete pod slice %s: %w", slice, err)
	}
	if ok {
		pids, err := s.m.procs(path)
		if err != nil {
			return fmt.Errorf("delete pod slice %s: %w", slice, err)
		}
		if len(pids) > 0 {
			return fmt.Errorf("delete pod slice %s: %w (pids %v)", slice, ErrNotEmpty, pids)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	if err := s.u.stop(ctx, slice); err != nil {
		return fmt.Errorf("delete pod slice %s: %w", slice, err)
	}
	if err := remove(s.m, path); err != nil {
		return fmt.Errorf("delete pod slice %s: %w", slice, err)
	}
	return nil
}

// placeShim starts the shim's scope in the pod's slice. On cgroup v1,
// systemd moves the shim only in the hierarchies it manages; the others
// (cpuset, freezer, ...) get the scope's path from the cgroup filesystem,
// as runc's systemd manager does for a container.
func (s sliceDriver) placeShim(slice, slicePath, podID string, pid int) (string, error) {
	scope := "warmpod-shim-" + podID + ".scope"
	if strings.ContainsAny(podID, "/\\") || len(scope) > 255 {
		return "", fmt.Errorf("%w: pod id %q cannot name a scope", ErrInvalid, podID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	props := []systemdDbus.Property{
		systemdDbus.PropDescription("warmpod shim of pod " + podID),
		newProp("DefaultDependencies", false),
		newProp("MemoryAccounting", true),
		newProp("CPUAccounting", true),
		newProp("TasksAccounting", true),
	}
	if err := s.u.startScope(ctx, scope, slice, pid, props); err != nil {
		return "", fmt.Errorf("start shim scope %s: %w", scope, err)
	}
	if !s.v2 {
		path := slicePath + "/" + scope
		if err := s.m.create(path, &specs.LinuxResources{}); err != nil {
			return "", fmt.Errorf("start shim scope %s: %w", scope, err)
		}
		if err := s.m.addProc(path, pid); err != nil {
			return "", fmt.Errorf("start shim scope %s: %w", scope, err)
		}
	}
	return scope, nil
}

// parentSlice is the slice a slice descends from: "a-b-c.slice" gives
// "a-b.slice", "a.slice" gives the root slice "-.slice".
func parentSlice(slice string) string {
	stem := strings.TrimSuffix(slice, ".slice")
	i := strings.LastIndexByte(stem, '-')
	if i <= 0 {
		return "-.slice"
	}
	return stem[:i] + ".slice"
}

// unitProperties converts the limits systemd manages itself into unit
// properties, in the names of the host's cgroup mode, the way the kubelet's
// cgroup library does for its own pod slices.
func unitProperties(res *specs.LinuxResources, v2 bool) ([]systemdDbus.Property, error) {
	var props []systemdDbus.Property
	if m := res.Memory; m != nil && m.Limit != nil {
		limit := uint64(math.MaxUint64) // "infinity": no limit
		if *m.Limit > 0 {
			limit = uint64(*m.Limit)
		}
		name := "MemoryLimit"
		if v2 {
			name = "MemoryMax"
		}
		props = append(props, newProp(name, limit))
	}
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares > 0 {
			if v2 {
				props = append(props, newProp("CPUWeight", cgroups.ConvertCPUSharesToCgroupV2Value(*c.Shares)))
			} else {
				props = append(props, newProp("CPUShares", *c.Shares))
			}
		}
		if c.Quota != nil {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			// systemd takes the quota per second of CPU time in whole
			// percent, so round up to 10 ms; "infinity" lifts it.
			perSec := uint64(math.MaxUint64)
			if *c.Quota > 0 {
				perSec = uint64(*c.Quota) * 1000000 / period
				if perSec%10000 != 0 {
					perSec = (perSec/10000 + 1) * 10000
				}
			}
			props = append(props, newProp("CPUQuotaPerSecUSec", perSec), newProp("CPUQuotaPeriodUSec", period))
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil {
		limit := uint64(math.MaxUint64)
		if *p.Limit > 0 {
			limit = uint64(*p.Limit)
		}
		props = append(props, newProp("TasksMax", limit))
	}
	return props, nil
}

func newProp(name string, value any) systemdDbus.Property {
	return systemdDbus.Property{Name: name, Value: dbus.MakeVariant(value)}
}

// dbusUnits talks to systemd over its private socket (root only, no
// message bus needed), or the system bus where that socket is not there.
// A connection systemd closed (it was restarted or re-executed) is opened
// again on the next call.
type dbusUnits struct {
	mu   sync.Mutex
	conn *systemdDbus.Conn
}

func (d *dbusUnits) connect(ctx context.Context) (*systemdDbus.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil && d.conn.Connected() {
		return d.conn, nil
	}
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	conn, err := systemdDbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		var busErr error
		if conn, busErr = systemdDbus.NewWithContext(ctx); busErr != nil {
			return nil, fmt.Errorf("connect to systemd (is it the init system? the systemd cgroup driver needs it): %w", errors.Join(err, busErr))
		}
	}
	d.conn = conn
	return conn, nil
}

// job runs a call that queues a systemd job and waits for its result.
func (d *dbusUnits) job(ctx context.Context, name string, call func(*systemdDbus.Conn, chan<- string) (int, error)) error {
	conn, err := d.connect(ctx)
	if err != nil {
		return err
	}
	done := make(chan string, 1)
	if _, err := call(conn, done); err != nil {
		return err
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("systemd job for %s: %s", name, result)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("systemd job for %s: %w", name, ctx.Err())
	}
}

func (d *dbusUnits) startSlice(ctx context.Context, name string, props []systemdDbus.Property) error {
	err := d.job(ctx, name, func(c *systemdDbus.Conn, ch chan<- string) (int, error) {
		return c.StartTransientUnitContext(ctx, name, "replace", props, ch)
	})
	var derr dbus.Error
	if errors.As(err, &derr) && derr.Name == "org.freedesktop.systemd1.UnitExists" {
		return errUnitExists
	}
	return err
}

func (d *dbusUnits) startScope(ctx context.Context, name, slice string, pid int, props []systemdDbus.Property) error {
	props = append(props, systemdDbus.PropSlice(slice), systemdDbus.PropPids(uint32(pid)))
	return d.job(ctx, name, func(c *systemdDbus.Conn, ch chan<- string) (int, error) {
		return c.StartTransientUnitContext(ctx, name, "replace", props, ch)
	})
}

func (d *dbusUnits) set(ctx context.Context, name string, props []systemdDbus.Property) error {
	conn, err := d.connect(ctx)
	if err != nil {
		return err
	}
	return conn.SetUnitPropertiesContext(ctx, name, true, props...)
}

func (d *dbusUnits) stop(ctx context.Context, name string) error {
	err := d.job(ctx, name, func(c *systemdDbus.Conn, ch chan<- string) (int, error) {
		return c.StopUnitContext(ctx, name, "replace", ch)
	})
	var derr dbus.Error
	if errors.As(err, &derr) && derr.Name == "org.freedesktop.systemd1.NoSuchUnit" {
		return nil
	}
	return err
}

var hostUnits units = &dbusUnits{}
