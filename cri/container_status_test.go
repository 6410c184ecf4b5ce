package cri

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainerUser(t *testing.T) {
	user := func(uid, gid int64, groups ...int64) *runtime.ContainerUser {
		return &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{Uid: uid, Gid: gid, SupplementalGroups: groups}}
	}
	tests := []struct {
		name string
		in   *specs.User
		want *runtime.ContainerUser
	}{
		{"not recorded", nil, nil},
		{"root without groups", &specs.User{}, user(0, 0, 0)},
		{"primary group listed with the supplementary ones, sorted",
			&specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{50000, 1234}}, user(1000, 1000, 1000, 1234, 50000)},
		{"primary group also supplementary", &specs.User{UID: 1, GID: 5, AdditionalGids: []uint32{5, 2}}, user(1, 5, 2, 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := containerUser(tt.in); !proto.Equal(got, tt.want) {
				t.Errorf("containerUser(%+v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
