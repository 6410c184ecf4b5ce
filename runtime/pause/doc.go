// Package pause runs a pod's pause process: pid 1 of the pod's shared pid
// namespace (Kubernetes shareProcessNamespace), which holds the namespace
// while containers come and go and reaps the orphans of every container in
// the pod. The pod's shim starts it (Start) from the warmpod binary, which
// runs Main when called with Arg.
//
// In a pod with a user namespace the pid namespace must belong to that user
// namespace, which a Go process cannot enter; a forked copy of the shim
// makes it (init_linux.go).
package pause
