package oci

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const localProfile = `{
	"defaultAction": "SCMP_ACT_ERRNO",
	"architectures": ["SCMP_ARCH_X86_64"],
	"syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
}`

func TestSeccomp(t *testing.T) {
	tests := []struct {
		name       string
		profile    *SecurityProfile
		privileged bool
		check      func(t *testing.T, p *specs.LinuxSeccomp)
		wantErr    string
	}{
		{name: "nil is unconfined", check: wantNoSeccomp},
		{name: "unconfined", profile: &SecurityProfile{Type: ProfileUnconfined}, check: wantNoSeccomp},
		{name: "privileged ignores the profile", profile: &SecurityProfile{Type: ProfileRuntimeDefault}, privileged: true, check: wantNoSeccomp},
		{
			name: "runtime default", profile: &SecurityProfile{Type: ProfileRuntimeDefault},
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				if p == nil || p.DefaultAction != specs.ActErrno || len(p.Syscalls) < 10 {
					t.Fatalf("profile = %+v, want the default filter", p)
				}
				if allowed(p, "reboot") {
					t.Error("default profile allows reboot without CAP_SYS_BOOT")
				}
				if !allowed(p, "chown") {
					t.Error("default profile denies chown")
				}
			},
		},
		{
			name: "localhost", profile: &SecurityProfile{Type: ProfileLocalhost, LocalhostRef: "/var/lib/kubelet/seccomp/ok.json"},
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				if p == nil || !allowed(p, "read") || allowed(p, "open") {
					t.Fatalf("profile = %+v, want the local one", p)
				}
			},
		},
		{name: "localhost missing", profile: &SecurityProfile{Type: ProfileLocalhost, LocalhostRef: "/nope.json"}, wantErr: `seccomp profile "/nope.json" does not exist`},
		{name: "localhost invalid", profile: &SecurityProfile{Type: ProfileLocalhost, LocalhostRef: "/bad.json"}, wantErr: `seccomp profile "/bad.json"`},
		{name: "localhost relative", profile: &SecurityProfile{Type: ProfileLocalhost, LocalhostRef: "ok.json"}, wantErr: "not an absolute host path"},
		{name: "unknown type", profile: &SecurityProfile{Type: 9}, wantErr: "seccomp profile type 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := build(t, func(c *Container, pod *Pod, sys *fakeSystem, _ *Host) {
				c.Security.Seccomp = tt.profile
				c.Security.Privileged, pod.Privileged = tt.privileged, tt.privileged
				sys.files["/var/lib/kubelet/seccomp/ok.json"] = []byte(localProfile)
				sys.files["/bad.json"] = []byte("{not json")
			})
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s.Linux.Seccomp)
		})
	}
}

// The default profile opens syscalls to holders of the matching capability.
func TestSeccompDefaultFollowsCapabilities(t *testing.T) {
	s := mustBuild(t, func(c *Container, _ *Pod, _ *fakeSystem, _ *Host) {
		c.Security.Seccomp = &SecurityProfile{Type: ProfileRuntimeDefault}
		c.Security.CapAdd = []string{"SYS_BOOT"}
	})
	if !allowed(s.Linux.Seccomp, "reboot") {
		t.Fatal("reboot denied although CAP_SYS_BOOT was added")
	}
}

func wantNoSeccomp(t *testing.T, p *specs.LinuxSeccomp) {
	t.Helper()
	if p != nil {
		t.Fatalf("seccomp = %+v, want none", p)
	}
}

func allowed(p *specs.LinuxSeccomp, name string) bool {
	for _, sc := range p.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 && slices.Contains(sc.Names, name) {
			return true
		}
	}
	return false
}

func TestApparmor(t *testing.T) {
	tests := []struct {
		name       string
		profile    *SecurityProfile
		enabled    bool
		privileged bool
		want       string
		wantErr    string
	}{
		{name: "nil", enabled: true},
		{name: "runtime default: no profile is installed", profile: &SecurityProfile{Type: ProfileRuntimeDefault}, enabled: true},
		{name: "localhost", profile: &SecurityProfile{Type: ProfileLocalhost, LocalhostRef: "localhost/my-profile"}, enabled: true, want: "my-profile"},
		{name: "localhost on a host without apparmor", profile: &SecurityProfile{Type: ProfileLocalhost, LocalhostRef: "my-profile"}},
		{name: "privileged is unconfined", profile: &SecurityProfile{Type: ProfileLocalhost, LocalhostRef: "p"}, enabled: true, privileged: true},
		{name: "localhost without a name", profile: &SecurityProfile{Type: ProfileLocalhost}, wantErr: "no profile is named"},
		{name: "unknown type", profile: &SecurityProfile{Type: 5}, wantErr: "apparmor profile type 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTestBuilder(Host{AppArmor: tt.enabled}, newFakeSystem())
			got, err := b.apparmorProfile(&Security{Apparmor: tt.profile, Privileged: tt.privileged})
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("profile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
