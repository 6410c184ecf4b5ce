//go:build !(seccomp && cgo)

package main

// libseccompVersion is empty: this binary has no seccomp support.
func libseccompVersion() string { return "" }
