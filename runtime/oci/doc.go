// Package oci builds the OCI runtime spec of a container from a translated CRI ContainerConfig, its pod's
// context and its image config. The shim hands the spec to libcontainer's specconv; tests check that
// specconv and libcontainer's validator accept every shape built here, and start real containers from
// them where the host allows.
//
// Semantics follow what the kubelet expects of containerd's CRI plugin and CRI-O. Where this package
// chooses differently, or where the choice is not obvious, it says so:
//
//   - A CRI mount whose host path does not exist is an error, as api.proto asks; containerd creates the
//     directory instead, which hides a mistyped path and turns a missing file into a directory.
//   - No rlimits are set: containers inherit the shim's, which the daemon's service manager decides
//     (containerd's CRI plugin does the same). A fixed RLIMIT_NOFILE of 1048576 fails every start with
//     EPERM where the daemon runs with a lower hard limit and without CAP_SYS_RESOURCE.
//   - Capabilities that the daemon itself does not hold cannot be passed on; asking for one is an error
//     at build time instead of EPERM at start. Privileged containers get every capability the daemon holds.
//   - Added capabilities do not enter the inheritable set (CVE-2022-24769); ambient ones do, as the
//     kernel requires.
//   - Resources.OOMScoreAdj is clamped into the pod's range (see HostOOMScoreAdjRange): without
//     CAP_SYS_RESOURCE a container may not go below the daemon's own oom_score_adj.
//   - LinuxResources is the one translation of CRI resources, for container create, container update and
//     pod update. Its swap rule is containerd's and CRI-O's: memory_swap_limit_in_bytes counts memory plus
//     swap, unset with a memory limit means no swap, -1 unlimited; swap limits are dropped where swap is not
//     accounted. Hugepage limits are dropped on hosts without the hugetlb controller (the kubelet sends them
//     for every page size the node has).
//   - Pod and container sysctls go into every container's spec: warmpod has no pause container to hold
//     them, so each start writes them into the pod's shared namespaces.
//   - AppArmor profiles are honoured only where the kernel enforces AppArmor; warmpod ships no default
//     profile, so RuntimeDefault is unconfined there too.
//   - SELinux relabelling and labels are not supported: SelinuxRelabel is accepted and ignored.
//
// Whoever runs these specs through libcontainer must register the device cgroup manager, as runc's main
// does, by importing github.com/opencontainers/cgroups/devices; without it every start fails with
// "cgroup manager is not configured to set device rules". Seccomp filters need the "seccomp" build tag.
package oci
