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
// What the daemon needs of the shim (Config, Record, the file names) is the
// contract in runtime/shim; this package is imported only by the binary's
// entry point (cmd/warmpod).
package service
