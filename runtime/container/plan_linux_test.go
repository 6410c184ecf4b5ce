package container

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// plainConfig is what specconv makes of a default CRI container, reduced to
// what the plan depends on.
func plainConfig() (*configs.Config, *specs.Process) {
	cfg := &configs.Config{
		Rootfs: "/run/rootfs",
		Namespaces: configs.Namespaces{
			{Type: configs.NEWPID},
			{Type: configs.NEWNET, Path: "/run/pod/ns/net"},
			{Type: configs.NEWIPC, Path: "/run/pod/ns/ipc"},
			{Type: configs.NEWUTS, Path: "/run/pod/ns/uts"},
			{Type: configs.NEWNS},
		},
		Mounts: []*configs.Mount{
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
			{Source: "/run/pod/hosts", Destination: "/etc/hosts", Device: "bind", Flags: unix.MS_BIND | unix.MS_REC},
		},
		Cgroups:      &cgroups.Cgroup{Path: "/pod/gen", Resources: &cgroups.Resources{}},
		Capabilities: &configs.Capabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}},
		MaskPaths:    []string{"/proc/kcore"},
	}
	p := &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	return cfg, p
}

func TestUnsupported(t *testing.T) {
	tests := []struct {
		name   string
		adjust func(*configs.Config, *specs.Process)
		want   string
	}{
		{name: "plain", adjust: func(*configs.Config, *specs.Process) {}, want: ""},
		{name: "terminal", adjust: func(_ *configs.Config, p *specs.Process) { p.Terminal = true }, want: "terminal"},
		{name: "apparmor", adjust: func(_ *configs.Config, p *specs.Process) { p.ApparmorProfile = "x" }, want: "apparmor profile"},
		{name: "selinux", adjust: func(c *configs.Config, _ *specs.Process) { c.MountLabel = "x" }, want: "selinux label"},
		{name: "user namespace mappings", adjust: func(c *configs.Config, _ *specs.Process) {
			c.UIDMappings = []configs.IDMap{{ContainerID: 0, HostID: 1000, Size: 1}}
		}, want: "user namespace"},
		{name: "joined user namespace", adjust: func(c *configs.Config, _ *specs.Process) {
			c.Namespaces = append(c.Namespaces, configs.Namespace{Type: configs.NEWUSER, Path: "/x"})
		}, want: "user namespace"},
		{name: "new network namespace", adjust: func(c *configs.Config, _ *specs.Process) {
			c.Namespaces[1].Path = ""
		}, want: "new network namespace"},
		{name: "no mount namespace", adjust: func(c *configs.Config, _ *specs.Process) {
			c.Namespaces = c.Namespaces[:4]
		}, want: "mount namespace"},
		{name: "hooks", adjust: func(c *configs.Config, _ *specs.Process) {
			c.Hooks = configs.Hooks{configs.CreateRuntime: configs.HookList{configs.NewCommandHook(&configs.Command{Path: "/x"})}}
		}, want: "hooks"},
		{name: "id-mapped mount", adjust: func(c *configs.Config, _ *specs.Process) {
			c.Mounts[2].IDMapping = &configs.MountIDMapping{}
		}, want: "id-mapped mount"},
		{name: "recursive read-only mount", adjust: func(c *configs.Config, _ *specs.Process) {
			c.Mounts[2].RecAttr = &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		}, want: "recursive mount attributes"},
		{name: "seccomp notify", adjust: func(c *configs.Config, _ *specs.Process) {
			c.Seccomp = &configs.Seccomp{DefaultAction: configs.Allow, Syscalls: []*configs.Syscall{{Name: "mkdir", Action: configs.Notify}}}
		}, want: "seccomp notify"},
		{name: "systemd cgroups", adjust: func(c *configs.Config, _ *specs.Process) { c.Cgroups.Systemd = true }, want: "cgroup driver"},
		{name: "unknown mount type", adjust: func(c *configs.Config, _ *specs.Process) {
			c.Mounts = append(c.Mounts, &configs.Mount{Device: "nfs", Destination: "/n"})
		}, want: "mount of type nfs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, p := plainConfig()
			tt.adjust(cfg, p)
			if got := unsupported(cfg, p); got != tt.want {
				t.Errorf("unsupported() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPrepareEnv(t *testing.T) {
	tests := []struct {
		env      []string
		want     []string
		needHome bool
		err      string
	}{
		{env: []string{"A=1", "B=2", "A=3"}, want: []string{"B=2", "A=3"}, needHome: true},
		{env: []string{"HOME=/h", "X="}, want: []string{"HOME=/h", "X="}},
		{env: []string{"HOME=", "X=1"}, want: []string{"X=1"}, needHome: true},
		{env: []string{"NOEQUALS"}, err: "missing '='"},
		{env: []string{"=v"}, err: "name cannot be empty"},
		{env: []string{"A=\x00"}, err: "nul byte"},
	}
	for _, tt := range tests {
		got, needHome, err := prepareEnv(tt.env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("prepareEnv(%q) error = %v, want %q", tt.env, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) || needHome != tt.needHome {
			t.Errorf("prepareEnv(%q) = %q, %v, %v; want %q, %v", tt.env, got, needHome, err, tt.want, tt.needHome)
		}
	}
}

func TestBuildPlan(t *testing.T) {
	cfg, p := plainConfig()
	flags, pidNS, plan, err := buildPlan(&planInput{id: "gen", cfg: cfg, proc: p})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(unix.CLONE_NEWPID | unix.CLONE_NEWNS); flags != want {
		t.Errorf("clone flags %#x, want %#x", flags, want)
	}
	if pidNS != "" {
		t.Errorf("pid namespace %q, want the fork server's", pidNS)
	}
	if len(plan) == 0 {
		t.Fatal("empty plan")
	}

	cfg.Namespaces[0].Path = "/run/pod/pidns"
	if _, pidNS, _, _ = buildPlan(&planInput{id: "gen", cfg: cfg, proc: p}); pidNS != "/run/pod/pidns" {
		t.Errorf("pid namespace %q, want the pod's", pidNS)
	}

	p.Args = []string{"sleep\x00"}
	if _, _, _, err := buildPlan(&planInput{id: "gen", cfg: cfg, proc: p}); err == nil {
		t.Error("a nul byte in an argument was accepted")
	}
	p.Args = []string{"sleep"}
	p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}
	if _, _, _, err := buildPlan(&planInput{id: "gen", cfg: cfg, proc: p}); err == nil || !strings.Contains(err.Error(), "RLIMIT_BOGUS") {
		t.Errorf("unknown rlimit: error %v", err)
	}
}

// A container placed by the systemd cgroup driver ("slice:prefix:name") is
// left to libcontainer, whose systemd manager has systemd make its scope.
func TestSystemdCgroupsPathGoesToLibcontainer(t *testing.T) {
	e := &Engine{spawner: SpawnerFast, templates: map[string]*fastTemplate{}}
	for path, want := range map[string]string{
		"warmpod-pod1.slice:warmpod:c1": "cgroup driver",
		"/warmpod/pod1/c1":              "",
	} {
		spec := &specs.Spec{
			Root:    &specs.Root{Path: "/run/rootfs"},
			Process: &specs.Process{Args: []string{"true"}, Cwd: "/"},
			Linux: &specs.Linux{
				CgroupsPath: path,
				Namespaces:  []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}},
			},
		}
		tmpl, err := e.template(Config{ID: "c1", Spec: spec})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := tmpl.reason(); got != want {
			t.Errorf("%s: left to libcontainer because %q, want %q", path, got, want)
		}
	}
}

// A generation may bind files of its own (its termination message file):
// the template's mounts with the generation's sources, the template's
// config untouched; any other difference is not the template's.
func TestMountsForGeneration(t *testing.T) {
	term := specs.Mount{Destination: "/dev/termination-log", Type: "bind", Source: "/gen1/term", Options: []string{"rbind", "rw"}}
	proc := specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}
	tmpl := &fastTemplate{
		cfg: &configs.Config{Mounts: []*configs.Mount{
			{Destination: "/proc", Source: "proc", Device: "proc"},
			{Destination: "/dev/termination-log", Source: "/gen1/term", Device: "bind", Flags: unix.MS_BIND | unix.MS_REC},
		}},
		mounts: []specs.Mount{proc, term},
	}
	gen2 := term
	gen2.Source = "/gen2/term"
	got, err := tmpl.mountsFor([]specs.Mount{proc, gen2})
	if err != nil {
		t.Fatal(err)
	}
	if got[1].Source != "/gen2/term" || got[1].Flags != unix.MS_BIND|unix.MS_REC || got[0] != tmpl.cfg.Mounts[0] {
		t.Errorf("mounts %+v %+v", *got[0], *got[1])
	}
	if tmpl.cfg.Mounts[1].Source != "/gen1/term" {
		t.Errorf("the template's mount changed: %+v", *tmpl.cfg.Mounts[1])
	}
	if got, err := tmpl.mountsFor([]specs.Mount{proc, term}); err != nil || got[1] != tmpl.cfg.Mounts[1] {
		t.Errorf("same mounts: %v %v", got, err)
	}
	moved := gen2
	moved.Destination = "/dev/other"
	relative := term
	relative.Source = "term"
	for _, ms := range [][]specs.Mount{{proc}, {proc, moved}, {proc, relative}, {gen2, proc}} {
		if _, err := tmpl.mountsFor(ms); !errors.Is(err, errTemplateDiffers) {
			t.Errorf("mounts %v: err %v, want errTemplateDiffers", ms, err)
		}
	}
}

// A generation may join a namespace by another path (the pid namespace of
// its target's current generation): the template's namespaces with the
// generation's paths.
func TestNamespacesForGeneration(t *testing.T) {
	tmpl := &fastTemplate{
		cfg: &configs.Config{Namespaces: configs.Namespaces{
			{Type: configs.NEWPID, Path: "/proc/10/fd/7"},
			{Type: configs.NEWNS},
		}},
		namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/10/fd/7"}, {Type: specs.MountNamespace}},
	}
	got, err := tmpl.namespacesFor([]specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/10/fd/9"}, {Type: specs.MountNamespace}})
	if err != nil {
		t.Fatal(err)
	}
	if got.PathOf(configs.NEWPID) != "/proc/10/fd/9" || tmpl.cfg.Namespaces.PathOf(configs.NEWPID) != "/proc/10/fd/7" {
		t.Errorf("namespaces %+v, template's %+v", got, tmpl.cfg.Namespaces)
	}
	for _, ns := range [][]specs.LinuxNamespace{
		{{Type: specs.PIDNamespace, Path: "/proc/10/fd/9"}},
		{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}},
	} {
		if _, err := tmpl.namespacesFor(ns); !errors.Is(err, errTemplateDiffers) {
			t.Errorf("namespaces %v: err %v, want errTemplateDiffers", ns, err)
		}
	}
}
