package integration

import (
	"slices"
	"testing"
)

// The leak check is only as good as its comparison; these pin it down.

func TestSnapshotDiff(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after snapshot
		want          []string
	}{
		{"same", snapshot{kindMounts: {"/a (overlay)"}}, snapshot{kindMounts: {"/a (overlay)"}}, nil},
		{"added and removed", snapshot{kindCgroups: {"memory:/p/1"}}, snapshot{kindCgroups: {"memory:/p/2"}},
			[]string{"cgroups under the parent: + memory:/p/2"}},
		{"kind only after", snapshot{}, snapshot{kindLinks: {"wp1 (veth)"}}, []string{"links on the bridge: + wp1 (veth)"}},
		{"duplicates count", snapshot{kindFDs: {"pipe"}}, snapshot{kindFDs: {"pipe", "pipe"}}, []string{"daemon fds: + pipe"}},
		{"fewer fds is no leak", snapshot{kindFDs: {"pipe", "/dev/null"}}, snapshot{kindFDs: {"pipe"}}, nil},
		{"fewer processes is no leak", snapshot{kindProcesses: {"pid 9"}}, snapshot{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.before.diff(tc.after); !slices.Equal(got, tc.want) {
				t.Errorf("diff = %q, want %q", got, tc.want)
			}
		})
	}
}

// A count below its baseline is no leak (issue 12: "daemon fds 20 -> 19"
// failed a fresh machine's run); settling still waits for equal counts.
func TestResetSnapshotGrown(t *testing.T) {
	base := resetSnapshot{daemonFDs: 20, shimFDs: 30, mounts: 5, cgroups: 4, links: 1, shimChildren: 3}
	for _, tc := range []struct {
		name        string
		after       resetSnapshot
		grown, diff string
	}{
		{"same", base, "", ""},
		{"daemon fd closed", resetSnapshot{daemonFDs: 19, shimFDs: 30, mounts: 5, cgroups: 4, links: 1, shimChildren: 3},
			"", "daemon fds 20 -> 19"},
		{"mount and child more", resetSnapshot{daemonFDs: 20, shimFDs: 30, mounts: 6, cgroups: 4, links: 1, shimChildren: 4},
			"mounts 5 -> 6, shim children 3 -> 4", "mounts 5 -> 6, shim children 3 -> 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := base.grown(tc.after); got != tc.grown {
				t.Errorf("grown = %q, want %q", got, tc.grown)
			}
			if got := base.diff(tc.after); got != tc.diff {
				t.Errorf("diff = %q, want %q", got, tc.diff)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		stat, comm, state string
		ppid              int
	}{
		{"42 (warmpod) S 7 42 42 0", "warmpod", "S", 7},
		{"43 (runc:[2:INIT]) R 42 1 1", "runc:[2:INIT]", "R", 42},
		{"44 (a) b) (c) Z 1 1", "a) b) (c", "Z", 1},
	} {
		comm, state, ppid := parseStat(tc.stat)
		if comm != tc.comm || state != tc.state || ppid != tc.ppid {
			t.Errorf("parseStat(%q) = %q %q %d, want %q %q %d", tc.stat, comm, state, ppid, tc.comm, tc.state, tc.ppid)
		}
	}
}
