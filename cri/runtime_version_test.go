package cri

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/util/version"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet reads RuntimeVersion with ParseSemantic, then ParseGeneric,
// and shows "Unknown" for the node's runtime when both fail.
func TestVersionIsOneTheKubeletCanRead(t *testing.T) {
	for _, tc := range []struct{ built, want string }{
		{"v1.2.3", "v1.2.3"},
		{"v0.3.0-5-g7b27611-dirty", "v0.3.0-5-g7b27611-dirty"},
		{"v0.0.0-20261202024000-7b2761123456+dirty", "v0.0.0-20261202024000-7b2761123456+dirty"},
		{"7b27611", "0.0.0-7b27611"},
		{"7b27611-dirty", "0.0.0-7b27611-dirty"},
		{"dev", "0.0.0-dev"},
		{"my build/1", "0.0.0-my.build.1"},
		{"", "0.0.0-unknown"},
	} {
		resp, err := New(Options{Version: tc.built}).Version(context.Background(), &runtime.VersionRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetRuntimeVersion()
		if got != tc.want {
			t.Errorf("built as %q: RuntimeVersion %q, want %q", tc.built, got, tc.want)
		}
		if _, err := version.ParseGeneric(got); err != nil {
			t.Errorf("built as %q: the kubelet cannot read RuntimeVersion %q: %v", tc.built, got, err)
		}
	}
}
