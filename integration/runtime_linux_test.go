package integration

import (
	"sort"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestVersion(t *testing.T) {
	ctx := begin(t)
	v, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "warmpod" {
		t.Errorf("runtime name %q, want warmpod", v.RuntimeName)
	}
	if v.RuntimeApiVersion != "v1" {
		t.Errorf("runtime API version %q, want v1", v.RuntimeApiVersion)
	}
	if v.RuntimeVersion == "" {
		t.Error("runtime version is empty")
	}
}

func TestStatus(t *testing.T) {
	ctx := begin(t)
	resp, err := d.Runtime.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range resp.Status.GetConditions() {
		conds[c.Type] = c
	}
	for _, typ := range []string{runtimeapi.RuntimeReady, runtimeapi.NetworkReady} {
		c := conds[typ]
		if c == nil {
			t.Errorf("condition %s missing", typ)
			continue
		}
		if !c.Status {
			t.Errorf("condition %s is false: %s: %s", typ, c.Reason, c.Message)
		}
	}

	var names []string
	for _, h := range resp.RuntimeHandlers {
		names = append(names, h.Name)
	}
	sort.Strings(names)
	if len(names) != 2 || names[0] != "" || names[1] != "warmpod" {
		t.Errorf("runtime handlers %q, want [\"\" \"warmpod\"]", names)
	}
	if len(resp.Info) == 0 {
		t.Error("verbose status has no info")
	}
}

func TestRuntimeConfig(t *testing.T) {
	ctx := begin(t)
	resp, err := d.Runtime.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// warmpod manages cgroups through cgroupfs paths (the kubelet's
	// cgroupfs driver), not systemd slices.
	if got := resp.GetLinux().GetCgroupDriver(); got != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("cgroup driver %s, want CGROUPFS", got)
	}
}
