package cgroup

import (
	"errors"
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
	if Driver() != "cgroupfs" {
		t.Fatalf("Driver() = %q", Driver())
	}
}
