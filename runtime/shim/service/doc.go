// Package service is the shim: the per-pod process that owns a pod's containers.
//
// The daemon starts one shim per pod sandbox ("warmpod shim --state DIR") after
// writing the pod's Config to DIR/pod.json. The shim serves the Shim gRPC API
// on DIR/shim.sock. It is the parent (child subreaper) of every container
// process of the pod, owns their stdio and log files, and records every
// container transition in its journal (DIR/containers.log), so a daemon
// restart loses neither a running container nor an exit code nor a log line.
//
// Warmth: for every container name the shim keeps a slot with the spec of its
// latest container and, while that container runs, a pre-created next
// generation (rootfs mounted, namespaces joined, cgroup placed, process
// blocked before execve). A CreateContainer with the same process shape takes
// the pre-created generation; a pod reset kills the current generations and
// releases the pre-created ones in start order.
//
// # One container, five types
//
// A CRI container is seen through several types; the ones of this package
// are unexported:
//
//   - template: what every generation of a container is made from
//     (spec, layers, stdio) and the key of its process shape. Immutable.
//   - slot: one container name of the pod, across its containers and their
//     generations: the template of the latest container and the
//     pre-created next generation (slot.go has its states).
//   - ctr: one CRI container (an id, from create to remove), its current
//     generation, its log and attached clients. An in-place restart keeps
//     the ctr and replaces its generation.
//   - gen: one generation, a libcontainer container with its own rootfs
//     and cgroup, pre-created or bound to a ctr.
//   - container.Gen (runtime/container): the libcontainer container and
//     init process of one gen; the only one that knows libcontainer.
//
// shim.Record (runtime/shim) is what the shim tells of a ctr: its state
// and exits, journaled and sent to the daemon. The daemon's own view of
// the container is sandbox's container, which keeps the latest Record.
//
// Shim's documentation has the goroutines and the lock order.
//
// What the daemon needs of the shim (Config, Record, the file names) is the
// contract in runtime/shim; this package is imported only by the binary's
// entry point (cmd/warmpod).
package service
