package cri

import (
	"context"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Name and API version reported by Version.
const (
	runtimeName       = "warmpod"
	runtimeAPIVersion = "v1"
	kubeAPIVersion    = "0.1.0"
)

// Version reports the runtime's name and versions.
func (s *Service) Version(ctx context.Context, r *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    runtimeVersion(s.opts.Version),
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}

// runtimeVersion is the binary's version v as the kubelet can read it. The
// kubelet parses RuntimeVersion as a version (semantic, else generic) and
// shows the node's runtime as "warmpod://Unknown" when it cannot: a build
// from an untagged commit ("7b27611-dirty") or without a version ("dev")
// is reported as a pre-release of 0.0.0 that keeps v in full.
func runtimeVersion(v string) string {
	if _, err := version.ParseGeneric(v); err == nil {
		return v
	}
	ids := strings.FieldsFunc(v, func(r rune) bool {
		allowed := r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-'
		return !allowed
	})
	pre := "0.0.0-" + strings.Join(ids, ".")
	if _, err := version.ParseGeneric(pre); len(ids) == 0 || err != nil {
		return "0.0.0-unknown"
	}
	return pre
}
