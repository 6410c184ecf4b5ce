package cri

import (
	"strings"
	"testing"
	"unicode"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

func TestIsRead(t *testing.T) {
	tests := []struct {
		rpc  string
		want bool
	}{
		{"Version", true},
		{"Status", true},
		{"RuntimeConfig", true},
		{"ListPodSandbox", true},
		{"PodSandboxStatus", true},
		{"ListContainerStats", true},
		{"ImageFsInfo", true},
		{"PodStatus", true},
		{"UpdateRuntimeConfig", false},
		{"UpdateContainerResources", false},
		{"RunPodSandbox", false},
		{"PullImage", false},
		{"ResetPod", false},
	}
	for _, tt := range tests {
		t.Run(tt.rpc, func(t *testing.T) {
			if got := isRead(tt.rpc); got != tt.want {
				t.Errorf("isRead(%q) = %v, want %v", tt.rpc, got, tt.want)
			}
		})
	}
}

// TestReadRPCsExist keeps readRPCs to unary RPCs the service serves, none
// of them named for a change.
func TestReadRPCsExist(t *testing.T) {
	unary := map[string]bool{}
	for _, d := range []grpc.ServiceDesc{runtime.RuntimeService_ServiceDesc, runtime.ImageService_ServiceDesc, warmpodv1.Warmpod_ServiceDesc} {
		for _, m := range d.Methods {
			unary[m.MethodName] = true
		}
	}
	mutating := map[string]bool{
		"Run": true, "Create": true, "Start": true, "Stop": true, "Remove": true, "Update": true, "Reopen": true,
		"Exec": true, "Checkpoint": true, "Restore": true, "Pull": true, "Import": true, "Reset": true,
	}
	for rpc := range readRPCs {
		if !unary[rpc] {
			t.Errorf("readRPCs names %q, which is no unary RPC", rpc)
		}
		// The first word of the name, up to the next capital letter.
		verb := rpc
		if i := strings.IndexFunc(rpc[1:], unicode.IsUpper); i >= 0 {
			verb = rpc[:i+1]
		}
		if mutating[verb] {
			t.Errorf("readRPCs names %q, a %s", rpc, verb)
		}
	}
}
