package oci

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// buildSeccomp returns the seccomp filter for the process. It needs the finished capability sets: the
// default profile allows some syscalls only to holders of the matching capability.
func (b *Builder) buildSeccomp(sec *Security, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	p := sec.Seccomp
	if sec.Privileged || p == nil {
		// api.proto: privileged containers run without seccomp, and an unset profile means unconfined.
		return nil, nil
	}
	switch p.Type {
	case ProfileUnconfined:
		return nil, nil
	case ProfileRuntimeDefault:
		prof, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, err
		}
		return prof, nil
	case ProfileLocalhost:
		if !filepath.IsAbs(p.LocalhostRef) {
			return nil, invalidf("seccomp profile %q is not an absolute host path", p.LocalhostRef)
		}
		body, err := b.sys.ReadFile(p.LocalhostRef)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, invalidf("seccomp profile %q does not exist", p.LocalhostRef)
		}
		if err != nil {
			return nil, invalidf("read seccomp profile %q: %w", p.LocalhostRef, err)
		}
		prof, err := seccomp.LoadProfile(string(body), s)
		if err != nil {
			return nil, invalidf("seccomp profile %q: %w", p.LocalhostRef, err)
		}
		return prof, nil
	default:
		return nil, invalidf("seccomp profile type %d is unknown", p.Type)
	}
}

// apparmorProfile names the AppArmor profile to apply, or "" for none. warmpod installs no profile of its
// own, so RuntimeDefault runs unconfined; on hosts without AppArmor nothing is applied at all, as there is
// nothing to enforce it.
func (b *Builder) apparmorProfile(sec *Security) (string, error) {
	p := sec.Apparmor
	if p == nil {
		return "", nil
	}
	switch p.Type {
	case ProfileRuntimeDefault, ProfileUnconfined:
		return "", nil
	case ProfileLocalhost:
		name := strings.TrimPrefix(p.LocalhostRef, "localhost/")
		if name == "" {
			return "", invalidf("apparmor profile type is Localhost but no profile is named")
		}
		if sec.Privileged || !b.host.AppArmor {
			return "", nil
		}
		return name, nil
	default:
		return "", invalidf("apparmor profile type %d is unknown", p.Type)
	}
}
