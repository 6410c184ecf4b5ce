package oci

// The types below mirror the parts of CRI v1 (k8s.io/cri-api runtime/v1 api.proto) that shape a container's
// OCI runtime spec, as plain Go values: the daemon translates the protobufs, this package never sees them.
// Zero values mean what the CRI zero values mean unless a field says otherwise.

// Container is a CRI ContainerConfig after the daemon has translated it (and resolved anything that needs
// the daemon's state, such as the target of a TARGET pid namespace).
type Container struct {
	// ID is the runtime's id for this container; it names the container's cgroup under Pod.CgroupParent.
	// It appears only in Linux.CgroupsPath.
	ID string
	// Name is ContainerMetadata.name, the container's name in the PodSpec.
	Name string
	// Rootfs is the host directory that becomes the container's root (the mounted overlay). It may be left
	// empty and filled in later.
	Rootfs string

	Command, Args []string
	WorkingDir    string
	// Env holds "KEY=VALUE" entries; a later entry for the same key wins.
	Env     []string
	Mounts  []Mount
	Devices []Device // host device nodes (CRI Device); CDI edits are applied separately by the caller
	// Labels are CRI metadata kept by the daemon; they do not shape the process and are not copied into the spec.
	Labels      map[string]string
	Annotations map[string]string
	// Tty asks for a terminal. Stdin only concerns the shim's stdio plumbing; it has no field in the spec.
	Tty, Stdin bool
	Resources  *Resources
	Security   Security
	// Sysctls are the pod's sysctls (CRI LinuxPodSandboxConfig.sysctls) as they apply to this container;
	// they override Pod.Sysctls key by key.
	Sysctls map[string]string
}

// Propagation is CRI MountPropagation.
type Propagation int

const (
	PropagationPrivate         Propagation = iota // rprivate
	PropagationHostToContainer                    // rslave: the host mount must be shared or slave
	PropagationBidirectional                      // rshared: the host mount must be shared
)

// Mount is a CRI Mount: a host path bind-mounted into the container.
type Mount struct {
	ContainerPath string
	// HostPath must exist; a symlink is followed and its target mounted (api.proto asks for both).
	HostPath string
	Readonly bool
	// RecursiveReadOnly makes every submount read-only too (the "rro" option, kernel ≥ 5.12). CRI requires
	// Readonly and PropagationPrivate with it.
	RecursiveReadOnly bool
	// SelinuxRelabel is accepted and ignored: warmpod does not manage SELinux labels.
	SelinuxRelabel bool
	Propagation    Propagation
	// UIDMappings and GIDMappings make the mount id-mapped; both or neither must be given.
	UIDMappings, GIDMappings []IDMapping
	// Image marks an image volume (KEP-4639): HostPath is the image's merged view. Image mounts are always
	// read-only, whatever Readonly says.
	Image bool
	// ImageSubPath is the directory of the image to mount instead of its root (for image volumes).
	ImageSubPath string
	// ImageID is the id of an image volume's image, recorded once it is resolved.
	ImageID string
	// Options are CRI mount_options: extra per-mount flags such as "noexec", "nodev", "nosuid".
	Options []string
}

// Device is a CRI Device.
type Device struct {
	ContainerPath, HostPath string
	// Permissions is a non-empty subset of "rwm"; empty means "rwm".
	Permissions string
}

// Resources is CRI LinuxContainerResources. Zero means "not specified" for every field, as in CRI.
type Resources struct {
	CPUPeriod, CPUQuota, CPUShares int64
	MemoryLimitInBytes             int64
	// MemorySwapLimitInBytes is memory+swap, as on cgroup v1; -1 is unlimited. Unset with a memory limit
	// means "no swap" on hosts that account swap (see LinuxResources).
	MemorySwapLimitInBytes int64
	// OOMScoreAdj is clamped into the pod's permitted range, see Pod.
	OOMScoreAdj            int64
	CpusetCpus, CpusetMems string
	// HugepageLimits maps a page size ("2MB", "1GB") to a limit in bytes.
	HugepageLimits map[string]uint64
	// Unified holds cgroup v2 files and values ("memory.high": "…"); it is an error on a cgroup v1 host.
	Unified map[string]string
	// PidsLimit caps the number of tasks in the container's cgroup; 0 means no limit. Not a CRI field:
	// the daemon may set it from its own configuration.
	PidsLimit int64
}

// ProfileType is CRI SecurityProfile.ProfileType.
type ProfileType int

const (
	ProfileRuntimeDefault ProfileType = iota
	ProfileUnconfined
	ProfileLocalhost
)

// SecurityProfile is a CRI SecurityProfile (seccomp or AppArmor).
type SecurityProfile struct {
	Type ProfileType
	// LocalhostRef is, for seccomp, the absolute host path of a JSON profile; for AppArmor, a profile name.
	LocalhostRef string
}

// Security is CRI LinuxContainerSecurityContext.
type Security struct {
	Privileged bool
	// CapAdd, CapDrop and CapAddAmbient take CRI names with or without "CAP_", in any case; "ALL" is
	// allowed in CapAdd and CapDrop.
	CapAdd, CapDrop, CapAddAmbient []string
	// RunAsUser and RunAsUsername are exclusive; RunAsGroup needs one of them (api.proto).
	RunAsUser     *int64
	RunAsUsername string
	RunAsGroup    *int64
	// SupplementalGroups are added to the process's groups; SupplementalGroupsPolicy decides whether the
	// image's /etc/group memberships of the user come too: "Merge" (the default, also for "") or "Strict".
	SupplementalGroups       []int64
	SupplementalGroupsPolicy string
	ReadonlyRootfs           bool
	NoNewPrivs               bool
	// MaskedPaths and ReadonlyPaths: nil means the defaults, empty non-nil means none (kubelet sends the
	// defaults, or empty for procMount: Unmasked).
	MaskedPaths, ReadonlyPaths []string
	// Seccomp: nil is Unconfined, as api.proto says of an empty profile.
	Seccomp *SecurityProfile
	// Apparmor is applied only on hosts where AppArmor is enabled, and warmpod installs no default profile:
	// there RuntimeDefault leaves the process unconfined and Localhost loads the named profile. On hosts
	// without AppArmor every value is accepted and ignored.
	Apparmor   *SecurityProfile
	Namespaces NamespaceOptions
}

// NamespaceMode is CRI NamespaceMode.
type NamespaceMode int

const (
	NamespacePod       NamespaceMode = iota // shared by the pod's containers
	NamespaceContainer                      // the container's own
	NamespaceNode                           // the host's
	NamespaceTarget                         // another container's (pid only)
)

// NamespaceOptions is CRI NamespaceOption.
type NamespaceOptions struct {
	Network, PID, IPC NamespaceMode
	TargetID          string
	// UserNS nil means no user namespace (the host's).
	UserNS *UserNamespace
}

// UserNamespace is CRI UserNamespace; Mode is NamespacePod or NamespaceNode.
type UserNamespace struct {
	Mode       NamespaceMode
	UIDs, GIDs []IDMapping
}

// IDMapping is CRI IDMapping.
type IDMapping struct {
	HostID, ContainerID, Length uint32
}

// Image is what the builder needs from the image the container runs.
type Image struct {
	// Name is the image reference the container was created from; it only goes into an annotation.
	Name string
	// User, WorkingDir, Entrypoint, Cmd and Env come from the image config.
	User, WorkingDir     string
	Entrypoint, Cmd, Env []string
	// Layers are the unpacked layer directories, bottom first, in overlayfs format (whiteouts are 0/0
	// character devices, opaque directories carry trusted.overlay.opaque=y). User lookups read /etc/passwd
	// and /etc/group through them as the merged view would show them.
	Layers []string
}

// Pod is the sandbox's context for one of its containers.
type Pod struct {
	// ID, Name, Namespace and UID identify the sandbox; they only go into annotations.
	ID, Name, Namespace, UID string
	// Hostname is the pod's hostname; empty (host network) means the node's. It becomes HOSTNAME.
	Hostname string
	// NetNS, IPCNS, UTSNS and PIDNS are nsfs paths to join. A NamespacePod mode needs its path; a
	// NamespaceNode mode ignores it. UTS follows the network mode; an empty UTSNS with a pod network gives
	// the container its own UTS namespace carrying Hostname.
	NetNS, IPCNS, UTSNS, PIDNS string
	// TargetPIDNS is the pid namespace of the container a NamespaceTarget pid mode names (the caller
	// resolves NamespaceOptions.TargetID to it).
	TargetPIDNS string
	// UserNS is the pod's user namespace to join when NamespaceOptions.UserNS has mode NamespacePod; empty
	// means the container gets a new one with the CRI mappings.
	UserNS string
	// CgroupParent is the pod's cgroup (cgroupfs style, absolute); the container's cgroup is
	// CgroupParent/Container.ID. Empty leaves Linux.CgroupsPath unset.
	CgroupParent string
	// ResolvConf, Hosts, HostnameFile and Shm are host paths bind-mounted to /etc/resolv.conf, /etc/hosts,
	// /etc/hostname and /dev/shm; "" skips the file. An empty Shm gives the container a private tmpfs, or
	// the host's /dev/shm when the IPC mode is NamespaceNode (as containerd does).
	ResolvConf, Hosts, HostnameFile, Shm string
	// Sysctls are the pod's sysctls (CRI LinuxPodSandboxConfig.sysctls).
	Sysctls map[string]string
	// Privileged says the pod may run privileged containers (CRI LinuxSandboxSecurityContext.privileged).
	Privileged bool
	// OOMScoreAdjMin and OOMScoreAdjMax bound Resources.OOMScoreAdj: the host may not let a container go
	// below the daemon's own value (see HostOOMScoreAdjRange). Both zero means the full range
	// [-1000, 1000].
	OOMScoreAdjMin, OOMScoreAdjMax int
}
