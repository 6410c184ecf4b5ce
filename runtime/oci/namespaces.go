package oci

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// nsPlan is the namespace part of a spec and what other parts need to know about it.
type nsPlan struct {
	namespaces               []specs.LinuxNamespace
	uidMappings, gidMappings []specs.LinuxIDMapping
	hostname                 string // set when the container gets a UTS namespace of its own
	hostNet, hostIPC         bool
	userNS                   bool
}

// buildNamespaces maps the CRI namespace modes onto the pod's pinned namespaces: network, IPC and UTS are
// joined from the pod (UTS follows the network mode: host network means host UTS), pid is the
// container's own, the pod's, the host's or another container's; the mount namespace is always new, and
// so is the cgroup namespace on cgroup v2, except for privileged containers, which see the whole
// hierarchy (containerd does the same, for compatibility).
func buildNamespaces(c *Container, pod *Pod, cgroupV2 bool) (nsPlan, error) {
	var p nsPlan
	opts := c.Security.Namespaces
	add := func(t specs.LinuxNamespaceType, path string) {
		p.namespaces = append(p.namespaces, specs.LinuxNamespace{Type: t, Path: path})
	}
	// join adds a namespace for a Pod/Container/Node mode, or says what is wrong.
	join := func(name string, t specs.LinuxNamespaceType, mode NamespaceMode, podPath string) (host bool, err error) {
		switch mode {
		case NamespacePod:
			if podPath == "" {
				return false, invalidf("%s namespace mode is POD but the pod has no %s namespace", name, name)
			}
			add(t, podPath)
		case NamespaceContainer:
			add(t, "")
		case NamespaceNode:
			return true, nil
		default:
			return false, invalidf("%s namespace mode %d is not supported", name, mode)
		}
		return false, nil
	}

	switch opts.PID {
	case NamespaceTarget:
		if pod.TargetPIDNS == "" {
			return p, invalidf("pid namespace mode is TARGET (target %q) but its pid namespace is not known", opts.TargetID)
		}
		add(specs.PIDNamespace, pod.TargetPIDNS)
	default:
		if _, err := join("pid", specs.PIDNamespace, opts.PID, pod.PIDNS); err != nil {
			return p, err
		}
	}
	var err error
	if p.hostNet, err = join("network", specs.NetworkNamespace, opts.Network, pod.NetNS); err != nil {
		return p, err
	}
	if p.hostIPC, err = join("ipc", specs.IPCNamespace, opts.IPC, pod.IPCNS); err != nil {
		return p, err
	}
	switch {
	case p.hostNet:
	case pod.UTSNS != "":
		add(specs.UTSNamespace, pod.UTSNS)
	default:
		add(specs.UTSNamespace, "")
		p.hostname = pod.Hostname
	}
	add(specs.MountNamespace, "")
	if cgroupV2 && !c.Security.Privileged {
		add(specs.CgroupNamespace, "")
	}

	if u := opts.UserNS; u != nil {
		switch u.Mode {
		case NamespaceNode:
		case NamespacePod:
			p.userNS = true
			if pod.UserNS != "" {
				// Joining an existing namespace takes its mappings; libcontainer refuses a spec that
				// repeats them unless they match exactly, so leave them out.
				add(specs.UserNamespace, pod.UserNS)
				break
			}
			if len(u.UIDs) == 0 || len(u.GIDs) == 0 {
				return p, invalidf("user namespace mode is POD but uid or gid mappings are missing")
			}
			add(specs.UserNamespace, "")
			p.uidMappings, p.gidMappings = idMappings(u.UIDs), idMappings(u.GIDs)
		default:
			// api.proto: user namespaces support only POD and NODE.
			return p, invalidf("user namespace mode %d is not supported: only POD and NODE are", u.Mode)
		}
	}
	return p, nil
}

func idMappings(in []IDMapping) []specs.LinuxIDMapping {
	if in == nil {
		return nil
	}
	out := make([]specs.LinuxIDMapping, len(in))
	for i, m := range in {
		out[i] = specs.LinuxIDMapping{HostID: m.HostID, ContainerID: m.ContainerID, Size: m.Length}
	}
	return out
}
