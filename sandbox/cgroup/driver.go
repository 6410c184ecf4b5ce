package cgroup

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// Cgroup drivers: how pod cgroups are named and who creates them. They
// are the kubelet's two drivers, and the kubelet's must match the
// runtime's.
const (
	// DriverCgroupfs names cgroups by their paths ("/kubepods/burstable/
	// pod<uid>") and creates them in the cgroup filesystem.
	DriverCgroupfs = "cgroupfs"
	// DriverSystemd names them as systemd units ("kubepods-burstable-
	// pod<uid>.slice") and has systemd create them through its D-Bus API.
	DriverSystemd = "systemd"
)

// DefaultSlice is the parent of pod cgroups under the systemd driver when
// the caller names none.
const DefaultSlice = "warmpod.slice"

var driver atomic.Value // string

// SetDriver selects the cgroup driver for pods created from now on. Call it
// once, before any pod is created.
func SetDriver(name string) error {
	switch name {
	case DriverCgroupfs, DriverSystemd:
		driver.Store(name)
		return nil
	}
	return fmt.Errorf("%w: cgroup driver %q: want %q or %q", ErrInvalid, name, DriverCgroupfs, DriverSystemd)
}

// Driver names the cgroup driver in use, as reported to the kubelet.
func Driver() string {
	if d, ok := driver.Load().(string); ok {
		return d
	}
	return DriverCgroupfs
}

// isSlice tells a systemd slice name ("a-b.slice") from a cgroupfs path.
func isSlice(p string) bool {
	return strings.HasSuffix(p, ".slice") && !strings.Contains(p, "/")
}

// podSlice names the pod cgroup of the systemd driver: a slice below
// parent ("" parent: DefaultSlice), named by systemd's convention that a
// dash descends one level ("kubepods-burstable-pod1.slice" and "abc" give
// "kubepods-burstable-pod1-abc.slice").
func podSlice(parent, name string) (string, error) {
	if parent == "" {
		parent = DefaultSlice
	}
	if err := checkSlice(parent); err != nil {
		if strings.HasPrefix(parent, "/") {
			return "", fmt.Errorf("%w: parent %q is a cgroupfs path; the cgroup driver is systemd, configure the kubelet with --cgroup-driver=systemd", ErrInvalid, parent)
		}
		return "", fmt.Errorf("parent: %w", err)
	}
	// The id becomes one level of the slice hierarchy: it may hold none of
	// the characters systemd would read as a level or an escape.
	if name == "" || len(name) > 128 || strings.ContainsFunc(name, func(r rune) bool { return !isAlnum(r) && r != '_' }) {
		return "", fmt.Errorf("%w: name %q cannot be a level of a systemd slice", ErrInvalid, name)
	}
	stem := strings.TrimSuffix(parent, ".slice")
	if stem == "-" {
		return name + ".slice", nil
	}
	return stem + "-" + name + ".slice", nil
}

// checkSlice accepts slice unit names systemd accepts: "-.slice" (the
// root) or dash-separated non-empty levels of unit name characters.
func checkSlice(s string) error {
	if !isSlice(s) || len(s) > 255 {
		return fmt.Errorf("%w: %q is not a systemd slice name (want name.slice, such as kubepods-burstable.slice)", ErrInvalid, s)
	}
	stem := strings.TrimSuffix(s, ".slice")
	if stem == "-" {
		return nil
	}
	for _, level := range strings.Split(stem, "-") {
		if level == "" {
			return fmt.Errorf("%w: slice %q has an empty level", ErrInvalid, s)
		}
	}
	if strings.ContainsFunc(stem, func(r rune) bool { return !isAlnum(r) && !strings.ContainsRune(":_.-\\", r) }) {
		return fmt.Errorf("%w: slice %q has characters a unit name cannot have", ErrInvalid, s)
	}
	return nil
}

// isAlnum tells an ASCII letter or digit.
func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}
