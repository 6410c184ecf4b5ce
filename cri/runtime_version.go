package cri

import (
	"context"

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
		RuntimeVersion:    s.opts.Version,
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}
