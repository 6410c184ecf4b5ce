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
			[]string{"cgroups under the parent: + memory:/p/2", "cgroups under the parent: - memory:/p/1"}},
		{"kind only after", snapshot{}, snapshot{kindLinks: {"wp1 (veth)"}}, []string{"links on the bridge: + wp1 (veth)"}},
		{"duplicates count", snapshot{kindFDs: {"pipe"}}, snapshot{kindFDs: {"pipe", "pipe"}}, []string{"daemon fds: + pipe"}},
		{"fewer fds is no leak", snapshot{kindFDs: {"pipe", "/dev/null"}}, snapshot{kindFDs: {"pipe"}}, nil},
		{"fewer processes is a difference", snapshot{kindProcesses: {"pid 9"}}, snapshot{}, []string{"processes: - pid 9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.before.diff(tc.after); !slices.Equal(got, tc.want) {
				t.Errorf("diff = %q, want %q", got, tc.want)
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
