// Package integration holds warmpod's black-box tests: they build the real
// daemon, start it with temporary directories, a bridge, subnet, iptables
// chain prefix and cgroup parent of their own (integration/launch, which
// the conformance run, the demo and the GPU check start theirs with too),
// serve it test images from a
// registry inside the test process, and drive it only over its CRI socket,
// with the Go CRI client and with crictl where it is installed.
//
// The tests need root and Linux; without root they skip. Run them with
// "make test-integration" (or go test ./integration/ as root).
package integration
