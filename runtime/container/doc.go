// Package container runs OCI containers with runc's libcontainer, in two
// steps that warmpod keeps apart on purpose:
//
//	Create   namespaces joined, cgroup placed, rootfs pivoted, process blocked
//	         before execve on libcontainer's exec fifo          (tens of ms)
//	Release  the blocked process execs the user's command         (~1-2 ms)
//
// Everything expensive happens in Create, so a pod's shim can create the next
// generation of a container while the current one still runs, and a reset only
// has to kill the old processes and release the new ones.
//
// It is the only package of warmpod that imports libcontainer. A binary that
// creates containers must call [Init] first thing in main (and a test binary in
// TestMain): libcontainer re-executes the current binary with the argument
// "init" to set the container up from the inside.
package container
