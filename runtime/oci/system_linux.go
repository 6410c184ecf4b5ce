package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/devices"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups/devices/config"
)

// osSystem is the real host.
type osSystem struct{}

func (osSystem) Hostname() (string, error)                { return os.Hostname() }
func (osSystem) EvalSymlinks(path string) (string, error) { return filepath.EvalSymlinks(path) }
func (osSystem) ReadFile(path string) ([]byte, error)     { return os.ReadFile(path) }

func (osSystem) MountPropagation(path string) (string, string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(path))
	if err != nil {
		return "", "", fmt.Errorf("read mountinfo: %w", err)
	}
	var m *mountinfo.Info
	for _, c := range mounts {
		// The deepest mountpoint holds path; of mounts stacked on one mountpoint the last is on top.
		if m == nil || len(c.Mountpoint) >= len(m.Mountpoint) {
			m = c
		}
	}
	if m == nil {
		return "", "", fmt.Errorf("no mount holds %s", path)
	}
	prop := "private"
	for _, opt := range strings.Fields(m.Optional) {
		switch {
		case strings.HasPrefix(opt, "shared:"):
			return "shared", m.Mountpoint, nil
		case strings.HasPrefix(opt, "master:"):
			prop = "slave"
		}
	}
	return prop, m.Mountpoint, nil
}

func (osSystem) Devices(path string) ([]hostDevice, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var found []*config.Device
	if info.IsDir() {
		if found, err = devices.GetDevices(path); err != nil {
			return nil, err
		}
	} else {
		d, err := devices.DeviceFromPath(path, "")
		if errors.Is(err, devices.ErrNotADevice) {
			return nil, errNotDevice
		}
		if err != nil {
			return nil, err
		}
		found = append(found, d)
	}
	out := make([]hostDevice, 0, len(found))
	for _, d := range found {
		var typ string
		switch d.Type {
		case config.CharDevice:
			typ = "c"
		case config.BlockDevice:
			typ = "b"
		default:
			if !info.IsDir() {
				return nil, errNotDevice
			}
			continue
		}
		out = append(out, hostDevice{
			Path: d.Path, Type: typ, Major: d.Major, Minor: d.Minor, Mode: d.FileMode.Perm(), UID: d.Uid, GID: d.Gid,
		})
	}
	return out, nil
}
