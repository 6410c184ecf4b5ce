package oci

import (
	"slices"
	"testing"
)

func TestCapabilities(t *testing.T) {
	held := testHost().Capabilities
	without := func(drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(held), func(c string) bool { return slices.Contains(drop, c) })
	}
	defaults := sorted(setOf(defaultCaps...))
	tests := []struct {
		name        string
		sec         Security
		want        []string // bounding = permitted = effective
		wantAmbient []string
		wantErr     string
	}{
		{name: "defaults", want: defaults},
		{
			name: "add without CAP_ prefix, any case", sec: Security{CapAdd: []string{"net_admin", "SYS_TIME"}},
			want: sorted(setOf(append([]string{"CAP_NET_ADMIN", "CAP_SYS_TIME"}, defaultCaps...)...)),
		},
		{
			name: "drop with prefix", sec: Security{CapDrop: []string{"CAP_NET_RAW", "chown"}},
			want: sorted(setOf(slices.DeleteFunc(slices.Clone(defaultCaps), func(c string) bool { return c == "CAP_NET_RAW" || c == "CAP_CHOWN" })...)),
		},
		{name: "add ALL", sec: Security{CapAdd: []string{"ALL"}}, want: held},
		{name: "add ALL drop one", sec: Security{CapAdd: []string{"all"}, CapDrop: []string{"SYS_ADMIN"}}, want: without("CAP_SYS_ADMIN")},
		{name: "drop ALL add one", sec: Security{CapDrop: []string{"ALL"}, CapAdd: []string{"KILL"}}, want: []string{"CAP_KILL"}},
		{name: "drop ALL", sec: Security{CapDrop: []string{"ALL"}}, want: nil},
		{name: "named drop beats named add", sec: Security{CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"NET_ADMIN"}}, want: defaults},
		{
			name: "ambient goes to every set", sec: Security{CapDrop: []string{"ALL"}, CapAddAmbient: []string{"NET_BIND_SERVICE"}},
			want: []string{"CAP_NET_BIND_SERVICE"}, wantAmbient: []string{"CAP_NET_BIND_SERVICE"},
		},
		{
			name: "dropped ambient is gone", sec: Security{CapAddAmbient: []string{"NET_ADMIN"}, CapDrop: []string{"NET_ADMIN"}},
			want: defaults,
		},
		{name: "privileged gets all held", sec: Security{Privileged: true}, want: held},
		{name: "privileged ignores drops", sec: Security{Privileged: true, CapDrop: []string{"ALL", "KILL"}}, want: held},
		{name: "unknown name", sec: Security{CapAdd: []string{"CAP_FLY"}}, wantErr: `unknown capability "CAP_FLY"`},
		{name: "unknown drop", sec: Security{CapDrop: []string{"teleport"}}, wantErr: `unknown capability "teleport"`},
		{name: "not held by the host", sec: Security{CapAdd: []string{"SYS_RESOURCE"}}, wantErr: "CAP_SYS_RESOURCE is not available"},
		{name: "ALL in ambient", sec: Security{CapAddAmbient: []string{"ALL"}}, wantErr: `"ALL" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capabilities(&tt.sec, held)
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, set := range map[string][]string{"bounding": got.Bounding, "permitted": got.Permitted, "effective": got.Effective} {
				if !slices.Equal(set, tt.want) {
					t.Errorf("%s = %v, want %v", name, set, tt.want)
				}
			}
			for name, set := range map[string][]string{"inheritable": got.Inheritable, "ambient": got.Ambient} {
				if !slices.Equal(set, tt.wantAmbient) {
					t.Errorf("%s = %v, want %v", name, set, tt.wantAmbient)
				}
			}
		})
	}
}

// A nested host may lack some default capabilities; containers then run without them rather than fail.
func TestCapabilitiesDefaultsLimitedToHeld(t *testing.T) {
	held := []string{"CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"}
	got, err := capabilities(&Security{}, held)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"CAP_CHOWN", "CAP_KILL"}; !slices.Equal(got.Bounding, want) {
		t.Fatalf("bounding = %v, want %v", got.Bounding, want)
	}
}
