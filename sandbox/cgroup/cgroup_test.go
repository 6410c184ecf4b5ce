package cgroup

import (
	"errors"
	"strings"
	"testing"
)

func TestPodPath(t *testing.T) {
	for _, tc := range []struct {
		parent, name string
		want         string
		wantErr      bool
	}{
		{"", "abc", "/warmpod/abc", false},
		{"/kubepods/burstable/pod1234", "abc", "/kubepods/burstable/pod1234/abc", false},
		{"kubepods", "abc", "", true},
		{"/kubepods/../etc", "abc", "", true},
		{"/kubepods/", "abc", "", true},
		{"/", "abc", "", true},
		{"kubepods-burstable-pod1.slice", "abc", "", true},
		{"/kubepods", "", "", true},
		{"/kubepods", "..", "", true},
		{"/kubepods", "a/b", "", true},
	} {
		got, err := podPath(tc.parent, tc.name)
		if tc.wantErr {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("podPath(%q, %q) = %q, %v; want ErrInvalid", tc.parent, tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("podPath(%q, %q) = %q, %v; want %q", tc.parent, tc.name, got, err, tc.want)
		}
	}
}

func TestMemoryFromUsage(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		usage, inactive, lim uint64
		ws, limit, available uint64
	}{
		{"limited", 100, 30, 1000, 70, 1000, 930},
		{"v1 unlimited", 100, 30, 9223372036854771712, 70, 0, 0},
		{"v2 max", 100, 30, 1<<64 - 1, 70, 0, 0},
		{"inactive above usage", 10, 30, 1000, 0, 1000, 1000},
		{"over limit", 2000, 0, 1000, 2000, 1000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := MemoryStats{UsageBytes: tc.usage}
			memoryFromUsage(&m, tc.inactive, tc.lim)
			if m.WorkingSetBytes != tc.ws || m.LimitBytes != tc.limit || m.AvailableBytes != tc.available {
				t.Errorf("got ws %d limit %d available %d; want %d %d %d",
					m.WorkingSetBytes, m.LimitBytes, m.AvailableBytes, tc.ws, tc.limit, tc.available)
			}
		})
	}
}

func TestDriver(t *testing.T) {
	if Driver() != DriverCgroupfs {
		t.Fatalf("Driver() = %q, want cgroupfs by default", Driver())
	}
	if err := SetDriver("systemd-ish"); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetDriver of an unknown driver = %v, want ErrInvalid", err)
	}
}

func TestPodSlice(t *testing.T) {
	for _, tc := range []struct {
		parent, name string
		want         string
	}{
		{"kubepods-burstable-pod1234_5678.slice", "abc", "kubepods-burstable-pod1234_5678-abc.slice"},
		{"kubepods.slice", "abc", "kubepods-abc.slice"},
		{"", "abc", "warmpod-abc.slice"},
		{"-.slice", "abc", "abc.slice"},
		{"/kubepods/burstable", "abc", ""},
		{"kubepods", "abc", ""},
		{"kubepods--x.slice", "abc", ""},
		{"-kubepods.slice", "abc", ""},
		{"a/b.slice", "abc", ""},
		{"a b.slice", "abc", ""},
		{"kubepods.slice", "", ""},
		{"kubepods.slice", "a-b", ""},
		{"kubepods.slice", "a.b", ""},
		{"kubepods.slice", "a/b", ""},
	} {
		got, err := podSlice(tc.parent, tc.name)
		if tc.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("podSlice(%q, %q) = %q, %v; want ErrInvalid", tc.parent, tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("podSlice(%q, %q) = %q, %v; want %q", tc.parent, tc.name, got, err, tc.want)
		}
	}
	// A cgroupfs parent under the systemd driver names the fix.
	if _, err := podSlice("/kubepods/burstable/pod1", "abc"); err == nil || !strings.Contains(err.Error(), "--cgroup-driver=systemd") {
		t.Errorf("podSlice of a cgroupfs path = %v, want a hint about the kubelet's driver", err)
	}
}

func TestParentSlice(t *testing.T) {
	for in, want := range map[string]string{
		"kubepods-burstable-pod1-abc.slice": "kubepods-burstable-pod1.slice",
		"kubepods.slice":                    "-.slice",
		"warmpod-abc.slice":                 "warmpod.slice",
	} {
		if got := parentSlice(in); got != want {
			t.Errorf("parentSlice(%q) = %q, want %q", in, got, want)
		}
	}
}
