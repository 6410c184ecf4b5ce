// Package sandbox is the daemon's model of pod sandboxes and their
// containers. It creates what a pod keeps for its whole life (pinned
// namespaces, network, pod cgroup, /etc files, /dev/shm, the pod's shim),
// drives each pod's shim for container operations, persists the metadata a
// daemon restart needs, and turns shim events into container events.
//
// Its types are plain Go: the CRI front end (package cri) translates CRI
// protobufs into them.
package sandbox

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox/etcfiles"
	"github.com/warmpod/warmpod/sandbox/network"
)

// PodConfig is a CRI PodSandboxConfig.
type PodConfig struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	Attempt   uint32 `json:"attempt"`

	Hostname     string                        `json:"hostname,omitempty"`
	LogDirectory string                        `json:"logDirectory,omitempty"`
	DNS          *etcfiles.DNS                 `json:"dns,omitempty"`
	PortMappings []network.PortMapping         `json:"portMappings,omitempty"`
	Labels       map[string]string             `json:"labels,omitempty"`
	Annotations  map[string]string             `json:"annotations,omitempty"`
	CgroupParent string                        `json:"cgroupParent,omitempty"`
	Sysctls      map[string]string             `json:"sysctls,omitempty"`
	Namespaces   oci.NamespaceOptions          `json:"namespaces"`
	Privileged   bool                          `json:"privileged,omitempty"`
	Resources    *oci.Resources                `json:"resources,omitempty"`
	HostAliases  []etcfiles.HostAlias          `json:"hostAliases,omitempty"`
	RestartRules map[string][]shim.RestartRule `json:"restartRules,omitempty"`
	// InitContainers and RestartPolicy come from warmpod's pod annotations.
	InitContainers []string `json:"initContainers,omitempty"`
	RestartPolicy  string   `json:"restartPolicy,omitempty"`
	RuntimeHandler string   `json:"runtimeHandler,omitempty"`
}

// HostNetwork tells whether the pod uses the node's network namespace.
func (c *PodConfig) HostNetwork() bool { return c.Namespaces.Network == oci.NamespaceNode }

// PodState is a CRI PodSandboxState.
type PodState int

const (
	PodReady PodState = iota
	PodNotReady
)

// PodInfo is what the daemon reports of a pod.
type PodInfo struct {
	ID        string
	Config    PodConfig
	CreatedAt int64
	State     PodState
	// IPs of the pod, primary first; empty for host-network pods.
	IPs        []string
	NetNSPath  string
	CgroupPath string
	ShimPid    int
	// Restarting is the AllContainersRestarting condition.
	Restarting bool
	Resets     uint64
	// Precreating tells whether the shim is making next generations for
	// any container name of the pod (live status only).
	Precreating bool
	// Live are the containers as the shim has them now (PodStatus with
	// live set; nil otherwise).
	Live []ContainerInfo
}

// ContainerConfig is a CRI ContainerConfig.
type ContainerConfig struct {
	Name    string `json:"name"`
	Attempt uint32 `json:"attempt"`
	// Image is the image as the caller named it.
	Image string `json:"image"`
	// LogPath is relative to the pod's log directory.
	LogPath     string            `json:"logPath,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Stdin       bool              `json:"stdin,omitempty"`
	StdinOnce   bool              `json:"stdinOnce,omitempty"`
	Tty         bool              `json:"tty,omitempty"`
	// StopSignal overrides the image's STOPSIGNAL ("SIGUSR1", "TERM", "15").
	StopSignal string `json:"stopSignal,omitempty"`
	// Spec shapes the process (command, env, mounts, security, ...).
	Spec oci.Container `json:"spec"`
	// CDIDevices are fully qualified CDI device names.
	CDIDevices []string `json:"cdiDevices,omitempty"`
}

// ContainerInfo is what the daemon reports of a container.
type ContainerInfo struct {
	ID     string
	PodID  string
	Config ContainerConfig
	// ImageID is the id of the image ("sha256:..."), as PullImage returned it.
	ImageID string
	// ImageName is a name of the image (a repo tag when it has one).
	ImageName string
	CreatedAt int64
	// LogPath is absolute ("" when the pod has no log directory).
	LogPath string
	Status  shim.Record
	// Resources are the limits last applied by UpdateContainerResources;
	// nil when they are still those of Config.
	Resources *specs.LinuxResources
	// User is the identity the container's process starts with (nil for a
	// container created before it was recorded).
	User *specs.User
}
