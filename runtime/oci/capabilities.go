package oci

import (
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultCaps is the set every container runtime gives an unprivileged container; workloads are written
// against it.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// capOrder numbers every capability the capability package knows, so sets come out in kernel order.
var capOrder = func() map[string]int {
	m := make(map[string]int)
	for _, c := range capability.ListKnown() {
		m[capName(c)] = int(c)
	}
	return m
}()

func capName(c capability.Cap) string { return "CAP_" + strings.ToUpper(c.String()) }

// capabilities builds the process's capability sets. held is every capability the daemon can pass on:
// asking for one outside it would only fail later, at start, with EPERM.
//
// As in containerd, "ALL" in add or drop is applied before the named entries, so {add: ALL, drop: CHOWN}
// is everything but CHOWN and {drop: ALL, add: KILL} is KILL alone; a named drop beats a named add.
// Added capabilities go to the bounding, permitted and effective sets; only ambient ones also go to the
// inheritable set (api.proto would put every added capability there, but an inheritable set lets file
// capabilities raise a non-root process's privileges, CVE-2022-24769, which is why runtimes stopped).
func capabilities(sec *Security, held []string) (*specs.LinuxCapabilities, error) {
	isHeld := make(map[string]bool, len(held))
	for _, c := range held {
		isHeld[c] = true
	}
	names := func(field string, list []string, allowAll bool) (caps []string, all bool, err error) {
		for _, raw := range list {
			if strings.EqualFold(raw, "ALL") {
				if !allowAll {
					return nil, false, invalidf("%s: \"ALL\" is not allowed", field)
				}
				all = true
				continue
			}
			name := strings.ToUpper(raw)
			if !strings.HasPrefix(name, "CAP_") {
				name = "CAP_" + name
			}
			if _, ok := capOrder[name]; !ok {
				return nil, false, invalidf("%s: unknown capability %q", field, raw)
			}
			caps = append(caps, name)
		}
		return caps, all, nil
	}
	add, addAll, err := names("capabilities add", sec.CapAdd, true)
	if err != nil {
		return nil, err
	}
	drop, dropAll, err := names("capabilities drop", sec.CapDrop, true)
	if err != nil {
		return nil, err
	}
	ambient, _, err := names("ambient capabilities add", sec.CapAddAmbient, false)
	if err != nil {
		return nil, err
	}
	for _, c := range slices.Concat(add, ambient) {
		if !isHeld[c] {
			return nil, invalidf("capability %s is not available to containers on this host", c)
		}
	}

	set := make(map[string]bool)
	switch {
	case sec.Privileged || addAll:
		for _, c := range held {
			set[c] = true
		}
	default:
		for _, c := range defaultCaps {
			// A host whose own bounding set lacks a default (a nested runtime) still runs containers.
			set[c] = isHeld[c]
		}
	}
	if dropAll && !sec.Privileged {
		clear(set)
	}
	amb := make(map[string]bool)
	for _, c := range add {
		set[c] = true
	}
	for _, c := range ambient {
		set[c], amb[c] = true, true
	}
	if !sec.Privileged {
		// api.proto: privileged mode may ignore capabilities; warmpod keeps every capability then.
		for _, c := range drop {
			delete(set, c)
			delete(amb, c)
		}
	}

	base, ambSet := sorted(set), sorted(amb)
	return &specs.LinuxCapabilities{
		Bounding:    base,
		Effective:   slices.Clone(base),
		Permitted:   slices.Clone(base),
		Inheritable: ambSet,
		Ambient:     slices.Clone(ambSet),
	}, nil
}

// sorted lists the capabilities set to true in kernel order; nil when there are none.
func sorted(set map[string]bool) []string {
	var out []string
	for c, on := range set {
		if on {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return capOrder[a] - capOrder[b] })
	return out
}
