package oci

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Builder turns translated CRI configs into OCI runtime specs for one host. It holds no per-container
// state and is safe for concurrent use.
type Builder struct {
	host Host
	sys  system
}

// NewBuilder returns a Builder for a host described by h (normally DetectHost's answer).
func NewBuilder(h Host) *Builder {
	return &Builder{host: h, sys: osSystem{}}
}

var defaultBuilder = sync.OnceValues(func() (*Builder, error) {
	h, err := ThisHost()
	if err != nil {
		return nil, fmt.Errorf("detect host: %w", err)
	}
	return NewBuilder(h), nil
})

// Build builds the spec for container c of pod from image img with a Builder for this host, detecting
// the host on first use.
func Build(c *Container, img *Image, pod *Pod) (*specs.Spec, error) {
	b, err := defaultBuilder()
	if err != nil {
		return nil, err
	}
	return b.Build(c, img, pod)
}

// Build builds the spec libcontainer's specconv turns into a container config. img may be nil (no image
// config, no /etc/passwd). Errors caused by the configuration match ErrInvalidArgument; nothing on the
// host is created or changed either way.
//
// The spec sets no rlimits: the container inherits the shim's, which the daemon's service manager sets
// (containerd does the same). A fixed RLIMIT_NOFILE such as 1048576 would fail every start with EPERM
// wherever the daemon runs with a lower hard limit and without CAP_SYS_RESOURCE.
func (b *Builder) Build(c *Container, img *Image, pod *Pod) (*specs.Spec, error) {
	if c == nil || pod == nil {
		return nil, errors.New("build spec: container and pod are required")
	}
	if img == nil {
		img = &Image{}
	}
	s, err := b.build(c, img, pod)
	if err != nil {
		return nil, fmt.Errorf("build spec for container %q: %w", c.Name, err)
	}
	return s, nil
}

func (b *Builder) build(c *Container, img *Image, pod *Pod) (*specs.Spec, error) {
	sec := &c.Security
	if c.Name == "" {
		return nil, invalidf("container name is empty")
	}
	if sec.Privileged && !pod.Privileged {
		return nil, invalidf("privileged container in a pod that does not allow privileged containers")
	}

	args, err := processArgs(c, img)
	if err != nil {
		return nil, err
	}
	cwd, err := processCwd(c, img)
	if err != nil {
		return nil, err
	}
	hostname := pod.Hostname
	if hostname == "" {
		if hostname, err = b.sys.Hostname(); err != nil {
			return nil, fmt.Errorf("read node hostname: %w", err)
		}
	}
	env, err := processEnv(c, img, hostname)
	if err != nil {
		return nil, err
	}
	usr, err := resolveUser(sec, img)
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(sec, b.host.Capabilities)
	if err != nil {
		return nil, err
	}
	oom, err := oomScoreAdj(c.Resources, pod)
	if err != nil {
		return nil, err
	}
	apparmor, err := b.apparmorProfile(sec)
	if err != nil {
		return nil, err
	}

	ns, err := buildNamespaces(c, pod, b.host.CgroupV2)
	if err != nil {
		return nil, err
	}
	mounts, plan, err := b.buildMounts(c, pod, ns.userNS && ns.hostNet)
	if err != nil {
		return nil, err
	}
	devices, deviceRules, err := b.buildDevices(c)
	if err != nil {
		return nil, err
	}
	res, err := LinuxResources(c.Resources, &b.host)
	if err != nil {
		return nil, err
	}
	res.Devices = deviceRules
	sysctls, err := buildSysctls(pod.Sysctls, c.Sysctls, ns)
	if err != nil {
		return nil, err
	}
	cgroupsPath, err := CgroupsPath(pod.CgroupParent, c.ID)
	if err != nil {
		return nil, err
	}

	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal:        c.Tty,
			User:            usr,
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			Capabilities:    caps,
			NoNewPrivileges: sec.NoNewPrivs,
			ApparmorProfile: apparmor,
			OOMScoreAdj:     oom,
		},
		Root:     &specs.Root{Path: c.Rootfs, Readonly: sec.ReadonlyRootfs},
		Hostname: ns.hostname,
		Mounts:   mounts,
		Linux: &specs.Linux{
			UIDMappings:       ns.uidMappings,
			GIDMappings:       ns.gidMappings,
			Sysctl:            sysctls,
			Resources:         res,
			CgroupsPath:       cgroupsPath,
			Namespaces:        ns.namespaces,
			Devices:           devices,
			RootfsPropagation: plan.rootfsPropagation,
		},
		Annotations: buildAnnotations(c, img, pod),
	}
	if !sec.Privileged {
		s.Linux.MaskedPaths = pathsOrDefault(sec.MaskedPaths, defaultMaskedPaths)
		s.Linux.ReadonlyPaths = pathsOrDefault(sec.ReadonlyPaths, defaultReadonlyPaths)
	}
	if s.Linux.Seccomp, err = b.buildSeccomp(sec, s); err != nil {
		return nil, err
	}
	return s, nil
}

// pathsOrDefault applies CRI's rule: nil asks for the defaults, an empty list for none.
func pathsOrDefault(given, defaults []string) []string {
	if given == nil {
		return append([]string(nil), defaults...)
	}
	return append([]string{}, given...)
}

// CgroupsPath places the cgroup of container id under the pod's, parent. Under the cgroupfs driver the pod's
// is an absolute path and the container's a directory below it; under the systemd driver the pod's is a
// slice and the container's is given as runc's "slice:prefix:name", which makes it the scope
// warmpod-<id>.scope in that slice. The shim gives each generation of a container a cgroup of its own the
// same way.
func CgroupsPath(parent, id string) (string, error) {
	if parent == "" {
		return "", nil
	}
	if id == "" || id != filepath.Base(id) || id == "." || id == ".." || strings.ContainsAny(id, ":") {
		return "", invalidf("container id %q cannot name a cgroup", id)
	}
	if strings.HasSuffix(parent, ".slice") && !strings.ContainsAny(parent, "/:") {
		return parent + ":" + SystemdScopePrefix + ":" + id, nil
	}
	if !path.IsAbs(parent) {
		return "", invalidf("cgroup parent %q is neither an absolute cgroupfs path nor a systemd slice", parent)
	}
	return path.Join(parent, id), nil
}

// SystemdScopePrefix starts the name of each container's scope under the systemd cgroup driver:
// warmpod-<id>.scope.
const SystemdScopePrefix = "warmpod"
