package oci

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// buildDevices turns CRI devices into device nodes and device cgroup rules. An unprivileged container
// starts from deny-all; libcontainer then appends the nodes and rules every container needs (null, zero,
// full, random, urandom, tty, ptmx, pts), so they are not repeated here. A privileged container gets every
// host device and an allow-all rule (api.proto: "All devices from the host's /dev are available").
func (b *Builder) buildDevices(c *Container) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var nodes []specs.LinuxDevice
	var rules []specs.LinuxDeviceCgroup
	if c.Security.Privileged {
		host, err := b.sys.Devices("/dev")
		if err != nil {
			return nil, nil, err
		}
		for _, d := range host {
			nodes = append(nodes, deviceNode(d, d.Path))
		}
		rules = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		rules = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	}

	for i, d := range c.Devices {
		added, err := b.criDevice(d)
		if err != nil {
			return nil, nil, invalidf("devices[%d] %q: %w", i, d.HostPath, err)
		}
		for _, n := range added {
			// A CRI device replaces a host device at the same path.
			nodes = slices.DeleteFunc(nodes, func(o specs.LinuxDevice) bool { return o.Path == n.node.Path })
			nodes = append(nodes, n.node)
			if !c.Security.Privileged {
				major, minor := n.node.Major, n.node.Minor
				rules = append(rules, specs.LinuxDeviceCgroup{
					Allow: true, Type: n.node.Type, Major: &major, Minor: &minor, Access: n.access,
				})
			}
		}
	}
	return nodes, rules, nil
}

type addedDevice struct {
	node   specs.LinuxDevice
	access string
}

// criDevice resolves one CRI device: a node, or a directory of nodes mounted under ContainerPath with
// the same relative paths (as containerd allows).
func (b *Builder) criDevice(d Device) ([]addedDevice, error) {
	access := d.Permissions
	if access == "" {
		access = "rwm"
	}
	if strings.Trim(access, "rwm") != "" || hasRepeat(access) {
		return nil, invalidf("permissions %q are not a subset of \"rwm\"", d.Permissions)
	}
	if strings.ContainsRune(d.ContainerPath, 0) || strings.ContainsRune(d.HostPath, 0) {
		return nil, invalidf("path %q or %q holds a NUL byte", d.ContainerPath, d.HostPath)
	}
	if !filepath.IsAbs(d.HostPath) {
		return nil, invalidf("host path is not absolute")
	}
	if !filepath.IsAbs(d.ContainerPath) {
		return nil, invalidf("container path %q is not absolute", d.ContainerPath)
	}
	src, err := b.sys.EvalSymlinks(d.HostPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, invalidf("host device does not exist")
		}
		return nil, err
	}
	found, err := b.sys.Devices(src)
	if err != nil {
		if errors.Is(err, errNotDevice) {
			return nil, invalidf("host path is not a character or block device")
		}
		return nil, err
	}
	dst := filepath.Clean(d.ContainerPath)
	out := make([]addedDevice, 0, len(found))
	for _, f := range found {
		p := dst
		if f.Path != src {
			rel, err := filepath.Rel(src, f.Path)
			if err != nil {
				return nil, err
			}
			p = filepath.Join(dst, rel)
		}
		out = append(out, addedDevice{node: deviceNode(f, p), access: access})
	}
	return out, nil
}

func deviceNode(d hostDevice, containerPath string) specs.LinuxDevice {
	mode, uid, gid := d.Mode, d.UID, d.GID
	return specs.LinuxDevice{
		Path: containerPath, Type: d.Type, Major: d.Major, Minor: d.Minor, FileMode: &mode, UID: &uid, GID: &gid,
	}
}

func hasRepeat(s string) bool {
	for i := range s {
		if strings.IndexByte(s[i+1:], s[i]) >= 0 {
			return true
		}
	}
	return false
}
