//go:build !linux

package cgroup

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var errNoCgroups = fmt.Errorf("cgroups: %w", errors.ErrUnsupported)

// Create needs Linux cgroups.
func Create(parent, name string, res *specs.LinuxResources) (string, error) {
	return "", errNoCgroups
}

// Update needs Linux cgroups.
func Update(path string, res *specs.LinuxResources) error { return errNoCgroups }

// Delete needs Linux cgroups.
func Delete(path string) error { return errNoCgroups }

// Stats needs Linux cgroups.
func Stats(path string) (*Metrics, error) { return nil, errNoCgroups }

// Procs needs Linux cgroups.
func Procs(path string) ([]int, error) { return nil, errNoCgroups }

// AddProc needs Linux cgroups.
func AddProc(path string, pid int) error { return errNoCgroups }

// PlaceShim needs Linux cgroups.
func PlaceShim(podCgroup, podID string, pid int) (string, error) { return "", errNoCgroups }

// Kill needs Linux cgroups.
func Kill(path string) error { return errNoCgroups }

// FavorDynMods does nothing off Linux.
func FavorDynMods() (bool, error) { return false, nil }
