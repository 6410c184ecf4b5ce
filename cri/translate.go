package cri

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox"
	"github.com/warmpod/warmpod/sandbox/etcfiles"
	"github.com/warmpod/warmpod/sandbox/network"
)

// Pod annotations through which a pod opts into warmpod's own behaviour.
const (
	// AnnotationRestartRules holds Kubernetes restartPolicyRules per
	// container name, as JSON ({"main": [{"action": ...}]}), which the
	// pod's shim applies itself the moment a container exits.
	AnnotationRestartRules = "warmpod.io/restart-policy-rules"
	// AnnotationInitContainers names the pod's init containers in order
	// (comma separated), for ResetPod; without it they are inferred.
	AnnotationInitContainers = "warmpod.io/init-containers"
	// AnnotationRestartPolicy is the pod's restartPolicy (Always,
	// OnFailure, Never); Never makes a reset stop at a failed init container.
	AnnotationRestartPolicy = "warmpod.io/restart-policy"
)

// podConfig translates a CRI PodSandboxConfig.
func podConfig(c *runtime.PodSandboxConfig, handler string) (sandbox.PodConfig, error) {
	if c == nil {
		return sandbox.PodConfig{}, invalid("config is required")
	}
	md := c.GetMetadata()
	if md == nil {
		return sandbox.PodConfig{}, invalid("config.metadata is required")
	}
	for field, v := range map[string]string{"name": md.Name, "namespace": md.Namespace, "uid": md.Uid} {
		if v == "" {
			return sandbox.PodConfig{}, invalid("config.metadata.%s is required", field)
		}
	}
	// The shim writes every container log below the log directory, as root:
	// it must be a plain absolute path, which the container log paths are
	// then kept below.
	if d := c.LogDirectory; d != "" && (!filepath.IsAbs(d) || filepath.Clean(d) != d || strings.ContainsRune(d, 0)) {
		return sandbox.PodConfig{}, invalid("config.log_directory %q is not an absolute, clean path", d)
	}
	pc := sandbox.PodConfig{
		Name:           md.Name,
		Namespace:      md.Namespace,
		UID:            md.Uid,
		Attempt:        md.Attempt,
		Hostname:       c.Hostname,
		LogDirectory:   c.LogDirectory,
		Labels:         c.Labels,
		Annotations:    c.Annotations,
		RuntimeHandler: handler,
	}
	if d := c.DnsConfig; d != nil {
		pc.DNS = &etcfiles.DNS{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
	}
	for i, pm := range c.PortMappings {
		proto, err := protocol(pm.Protocol)
		if err != nil {
			return sandbox.PodConfig{}, invalid("config.port_mappings[%d]: %v", i, err)
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return sandbox.PodConfig{}, invalid("config.port_mappings[%d]: port out of range (container %d, host %d)", i, pm.ContainerPort, pm.HostPort)
		}
		pc.PortMappings = append(pc.PortMappings, network.PortMapping{
			Protocol: proto, ContainerPort: pm.ContainerPort, HostPort: pm.HostPort, HostIP: pm.HostIp,
		})
	}
	if l := c.Linux; l != nil {
		pc.CgroupParent = l.CgroupParent
		pc.Sysctls = l.Sysctls
		pc.Privileged = l.GetSecurityContext().GetPrivileged()
		if l.Resources != nil {
			pc.Resources = resources(l.Resources)
		}
	}
	ns, err := namespaceOptions(c.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return sandbox.PodConfig{}, invalid("config.linux.security_context.namespace_options: %v", err)
	}
	pc.Namespaces = ns
	if v, ok := c.Annotations[AnnotationRestartRules]; ok {
		rules, err := shim.ParseRestartRules(v)
		if err != nil {
			return sandbox.PodConfig{}, invalid("annotation %s: %v", AnnotationRestartRules, err)
		}
		pc.RestartRules = rules
	}
	if v, ok := c.Annotations[AnnotationInitContainers]; ok {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				pc.InitContainers = append(pc.InitContainers, n)
			}
		}
	}
	if v, ok := c.Annotations[AnnotationRestartPolicy]; ok {
		switch v {
		case "Always", "OnFailure", "Never":
			pc.RestartPolicy = v
		default:
			return sandbox.PodConfig{}, invalid("annotation %s: unsupported value %q: supported values are Always, OnFailure and Never", AnnotationRestartPolicy, v)
		}
	}
	return pc, nil
}

func protocol(p runtime.Protocol) (string, error) {
	switch p {
	case runtime.Protocol_TCP:
		return "tcp", nil
	case runtime.Protocol_UDP:
		return "udp", nil
	case runtime.Protocol_SCTP:
		return "sctp", nil
	}
	return "", fmt.Errorf("unknown protocol %d", p)
}

func namespaceMode(m runtime.NamespaceMode) (oci.NamespaceMode, error) {
	switch m {
	case runtime.NamespaceMode_POD:
		return oci.NamespacePod, nil
	case runtime.NamespaceMode_CONTAINER:
		return oci.NamespaceContainer, nil
	case runtime.NamespaceMode_NODE:
		return oci.NamespaceNode, nil
	case runtime.NamespaceMode_TARGET:
		return oci.NamespaceTarget, nil
	}
	return 0, fmt.Errorf("unknown namespace mode %d", m)
}

func namespaceOptions(o *runtime.NamespaceOption) (oci.NamespaceOptions, error) {
	var ns oci.NamespaceOptions
	if o == nil {
		// CRI's zero values: pod network and ipc, a pid namespace of the container's own.
		ns.PID = oci.NamespaceContainer
		return ns, nil
	}
	var err error
	if ns.Network, err = namespaceMode(o.Network); err != nil {
		return ns, fmt.Errorf("network: %w", err)
	}
	if ns.PID, err = namespaceMode(o.Pid); err != nil {
		return ns, fmt.Errorf("pid: %w", err)
	}
	if ns.IPC, err = namespaceMode(o.Ipc); err != nil {
		return ns, fmt.Errorf("ipc: %w", err)
	}
	ns.TargetID = o.TargetId
	if ns.PID == oci.NamespaceTarget && ns.TargetID == "" {
		return ns, fmt.Errorf("pid mode TARGET needs target_id")
	}
	if u := o.UsernsOptions; u != nil {
		if err := validateUserNS(u); err != nil {
			return ns, fmt.Errorf("userns_options: %w", err)
		}
		mode, _ := namespaceMode(u.Mode)
		ns.UserNS = &oci.UserNamespace{Mode: mode, UIDs: idMappings(u.Uids), GIDs: idMappings(u.Gids)}
	}
	return ns, nil
}

// validateUserNS checks a CRI UserNamespace as api.proto defines it: mode
// POD or NODE; with POD, one range each of uids and gids (they may differ)
// that maps root, as the kubelet sends; with NODE, no mappings.
func validateUserNS(u *runtime.UserNamespace) error {
	switch u.Mode {
	case runtime.NamespaceMode_NODE:
		if len(u.Uids) > 0 || len(u.Gids) > 0 {
			return fmt.Errorf("mode NODE takes no uids or gids mappings")
		}
		return nil
	case runtime.NamespaceMode_POD:
	default:
		return fmt.Errorf("mode %s is not supported: only POD and NODE are", u.Mode)
	}
	for _, ids := range []struct {
		field string
		maps  []*runtime.IDMapping
	}{{"uids", u.Uids}, {"gids", u.Gids}} {
		if len(ids.maps) != 1 {
			return fmt.Errorf("mode POD needs exactly one %s mapping, got %d", ids.field, len(ids.maps))
		}
		m := ids.maps[0]
		switch {
		case m.ContainerId != 0:
			return fmt.Errorf("the %s mapping must map container id 0 (root), it starts at %d", ids.field, m.ContainerId)
		case m.Length == 0:
			return fmt.Errorf("the %s mapping has length 0", ids.field)
		case uint64(m.HostId)+uint64(m.Length) > math.MaxUint32:
			return fmt.Errorf("the %s mapping (host id %d, length %d) goes past the largest id", ids.field, m.HostId, m.Length)
		}
	}
	return nil
}

func idMappings(ms []*runtime.IDMapping) []oci.IDMapping {
	var out []oci.IDMapping
	for _, m := range ms {
		out = append(out, oci.IDMapping{HostID: m.HostId, ContainerID: m.ContainerId, Length: m.Length})
	}
	return out
}

func resources(r *runtime.LinuxContainerResources) *oci.Resources {
	if r == nil {
		return nil
	}
	res := &oci.Resources{
		CPUPeriod:              r.CpuPeriod,
		CPUQuota:               r.CpuQuota,
		CPUShares:              r.CpuShares,
		MemoryLimitInBytes:     r.MemoryLimitInBytes,
		MemorySwapLimitInBytes: r.MemorySwapLimitInBytes,
		OOMScoreAdj:            r.OomScoreAdj,
		CpusetCpus:             r.CpusetCpus,
		CpusetMems:             r.CpusetMems,
		Unified:                r.Unified,
	}
	for _, h := range r.HugepageLimits {
		if res.HugepageLimits == nil {
			res.HugepageLimits = make(map[string]uint64)
		}
		res.HugepageLimits[h.PageSize] = h.Limit
	}
	return res
}

func profile(p *runtime.SecurityProfile) *oci.SecurityProfile {
	if p == nil {
		return nil
	}
	sp := &oci.SecurityProfile{LocalhostRef: p.LocalhostRef}
	switch p.ProfileType {
	case runtime.SecurityProfile_RuntimeDefault:
		sp.Type = oci.ProfileRuntimeDefault
	case runtime.SecurityProfile_Unconfined:
		sp.Type = oci.ProfileUnconfined
	case runtime.SecurityProfile_Localhost:
		sp.Type = oci.ProfileLocalhost
	}
	return sp
}

// legacyProfile reads the deprecated string forms of seccomp and AppArmor
// profiles ("runtime/default", "unconfined", "localhost/<path>").
func legacyProfile(s string) *oci.SecurityProfile {
	switch {
	case s == "":
		return nil
	case s == "runtime/default" || s == "docker/default":
		return &oci.SecurityProfile{Type: oci.ProfileRuntimeDefault}
	case s == "unconfined":
		return &oci.SecurityProfile{Type: oci.ProfileUnconfined}
	case strings.HasPrefix(s, "localhost/"):
		return &oci.SecurityProfile{Type: oci.ProfileLocalhost, LocalhostRef: strings.TrimPrefix(s, "localhost/")}
	}
	return &oci.SecurityProfile{Type: oci.ProfileLocalhost, LocalhostRef: s}
}

// containerConfig translates a CRI ContainerConfig.
func containerConfig(c *runtime.ContainerConfig) (sandbox.ContainerConfig, error) {
	if c == nil {
		return sandbox.ContainerConfig{}, invalid("config is required")
	}
	md := c.GetMetadata()
	if md == nil || md.Name == "" {
		return sandbox.ContainerConfig{}, invalid("config.metadata.name is required")
	}
	if c.GetImage().GetImage() == "" {
		return sandbox.ContainerConfig{}, invalid("config.image.image is required")
	}
	cc := sandbox.ContainerConfig{
		Name:        md.Name,
		Attempt:     md.Attempt,
		Image:       c.Image.Image,
		LogPath:     c.LogPath,
		Labels:      c.Labels,
		Annotations: c.Annotations,
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		Tty:         c.Tty,
	}
	if c.StopSignal != runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
		cc.StopSignal = strings.TrimPrefix(c.StopSignal.String(), "SIGNAL_")
	}
	spec := oci.Container{
		Name:       md.Name,
		Command:    c.Command,
		Args:       c.Args,
		WorkingDir: c.WorkingDir,
	}
	for i, kv := range c.Envs {
		if kv.Key == "" {
			return sandbox.ContainerConfig{}, invalid("config.envs[%d]: empty key", i)
		}
		spec.Env = append(spec.Env, kv.Key+"="+string(kv.Value))
	}
	for i, m := range c.Mounts {
		if m.ContainerPath == "" {
			return sandbox.ContainerConfig{}, invalid("config.mounts[%d].container_path is required", i)
		}
		if m.HostPath == "" && m.Image == nil {
			return sandbox.ContainerConfig{}, invalid("config.mounts[%d] (%s): host_path is required", i, m.ContainerPath)
		}
		om := oci.Mount{
			ContainerPath:     m.ContainerPath,
			HostPath:          m.HostPath,
			Readonly:          m.Readonly,
			RecursiveReadOnly: m.RecursiveReadOnly,
			SelinuxRelabel:    m.SelinuxRelabel,
			UIDMappings:       idMappings(m.UidMappings),
			GIDMappings:       idMappings(m.GidMappings),
			Options:           m.MountOptions,
		}
		switch m.Propagation {
		case runtime.MountPropagation_PROPAGATION_PRIVATE:
			om.Propagation = oci.PropagationPrivate
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			om.Propagation = oci.PropagationHostToContainer
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			om.Propagation = oci.PropagationBidirectional
		default:
			return sandbox.ContainerConfig{}, invalid("config.mounts[%d] (%s): unknown propagation %d", i, m.ContainerPath, m.Propagation)
		}
		if m.Image != nil && m.Image.Image != "" {
			// api.proto: an image volume is read-only, and the runtime
			// should refuse one that is not rather than mount it writable.
			if !m.Readonly {
				return sandbox.ContainerConfig{}, invalid("config.mounts[%d] (%s): an image volume must be read-only", i, m.ContainerPath)
			}
			if sub := m.ImageSubPath; sub != "" && (filepath.IsAbs(sub) || slices.Contains(strings.Split(filepath.ToSlash(sub), "/"), "..")) {
				return sandbox.ContainerConfig{}, invalid("config.mounts[%d] (%s): image_sub_path %q must be relative, without ..", i, m.ContainerPath, sub)
			}
			om.Image = true
			om.HostPath = m.Image.Image
			om.ImageSubPath = m.ImageSubPath
		}
		spec.Mounts = append(spec.Mounts, om)
	}
	for i, d := range c.Devices {
		if d.ContainerPath == "" || d.HostPath == "" {
			return sandbox.ContainerConfig{}, invalid("config.devices[%d]: container_path and host_path are required", i)
		}
		spec.Devices = append(spec.Devices, oci.Device{ContainerPath: d.ContainerPath, HostPath: d.HostPath, Permissions: d.Permissions})
	}
	for _, d := range c.CDIDevices {
		if d.Name != "" {
			cc.CDIDevices = append(cc.CDIDevices, d.Name)
		}
	}
	spec.Resources = resources(c.GetLinux().GetResources())
	sec, err := security(c.GetLinux().GetSecurityContext())
	if err != nil {
		return sandbox.ContainerConfig{}, invalid("config.linux.security_context: %v", err)
	}
	spec.Security = sec
	cc.Spec = spec
	return cc, nil
}

func security(sc *runtime.LinuxContainerSecurityContext) (oci.Security, error) {
	if sc == nil {
		sc = &runtime.LinuxContainerSecurityContext{}
	}
	s := oci.Security{
		Privileged:         sc.Privileged,
		RunAsUsername:      sc.RunAsUsername,
		SupplementalGroups: sc.SupplementalGroups,
		ReadonlyRootfs:     sc.ReadonlyRootfs,
		NoNewPrivs:         sc.NoNewPrivs,
		MaskedPaths:        sc.MaskedPaths,
		ReadonlyPaths:      sc.ReadonlyPaths,
		Seccomp:            profile(sc.Seccomp),
		Apparmor:           profile(sc.Apparmor),
	}
	if s.Seccomp == nil {
		s.Seccomp = legacyProfile(sc.SeccompProfilePath) //nolint:staticcheck // deprecated, and what older kubelets send
	}
	if s.Apparmor == nil {
		s.Apparmor = legacyProfile(sc.ApparmorProfile) //nolint:staticcheck // deprecated, and what older kubelets send
	}
	if sc.SupplementalGroupsPolicy == runtime.SupplementalGroupsPolicy_Strict {
		s.SupplementalGroupsPolicy = "Strict"
	}
	if c := sc.Capabilities; c != nil {
		s.CapAdd, s.CapDrop, s.CapAddAmbient = c.AddCapabilities, c.DropCapabilities, c.AddAmbientCapabilities
	}
	if sc.RunAsUser != nil {
		v := sc.RunAsUser.Value
		s.RunAsUser = &v
	}
	if sc.RunAsGroup != nil {
		v := sc.RunAsGroup.Value
		s.RunAsGroup = &v
	}
	if s.RunAsUser != nil && s.RunAsUsername != "" {
		return s, fmt.Errorf("run_as_user and run_as_username are exclusive")
	}
	if s.RunAsGroup != nil && s.RunAsUser == nil && s.RunAsUsername == "" {
		return s, fmt.Errorf("run_as_group needs run_as_user or run_as_username")
	}
	ns, err := namespaceOptions(sc.NamespaceOptions)
	if err != nil {
		return s, fmt.Errorf("namespace_options: %w", err)
	}
	s.Namespaces = ns
	return s, nil
}

// matchLabels tells whether labels carry every pair of selector.
func matchLabels(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerFilter is what ContainerFilter and ContainerStatsFilter share.
// Their getters accept a nil filter, which selects every container.
type containerFilter interface {
	GetId() string
	GetPodSandboxId() string
	GetLabelSelector() map[string]string
}

// matchContainer tells whether c passes f's id prefix, pod id prefix and
// label selector.
func matchContainer(f containerFilter, c *sandbox.ContainerInfo) bool {
	return strings.HasPrefix(c.ID, f.GetId()) &&
		strings.HasPrefix(c.PodID, f.GetPodSandboxId()) &&
		matchLabels(f.GetLabelSelector(), c.Config.Labels)
}

// podFilter is what PodSandboxFilter and PodSandboxStatsFilter share.
// Their getters accept a nil filter, which selects every pod.
type podFilter interface {
	GetId() string
	GetLabelSelector() map[string]string
}

// matchPod tells whether p passes f's id prefix and label selector.
func matchPod(f podFilter, p *sandbox.PodInfo) bool {
	return strings.HasPrefix(p.ID, f.GetId()) && matchLabels(f.GetLabelSelector(), p.Config.Labels)
}

// verboseInfo is the Info map of a verbose status response: v as JSON under
// key, or nil when v does not marshal.
func verboseInfo(key string, v any) map[string]string {
	data, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return map[string]string{key: string(data)}
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
