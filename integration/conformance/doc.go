// Command conformance runs the CRI validation suite, critest, against a warmpod daemon it starts for the
// run, and cleans up after it.
//
// critest pulls its test images from registry.k8s.io, gcr.io, k8s.gcr.io and public.ecr.aws, none of which
// a test machine can reach. The command builds look-alikes of those images (integration/testimages,
// CritestImages), serves them from a registry on a loopback port, and configures the daemon, through its
// TOML configuration file as an operator would, to use that registry as the mirror of each of those hosts.
//
// The daemon gets its own root, state directory, socket, bridge, subnet, iptables chain prefix and cgroup
// parent, so the run never meets a daemon on the defaults. Afterwards the command removes every pod over
// CRI, stops the daemon and removes the bridge, the chains, the cgroups and the directories. It prints the
// tally of specs passed, failed and skipped (and why each was skipped) and exits non-zero when a spec failed.
//
// integration/conformance/run.sh is the entry point (make conformance): it installs critest when missing,
// picks the busybox the images are built from, and holds the list of specs skipped, with the reason for
// each.
package main
