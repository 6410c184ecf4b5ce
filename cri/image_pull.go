package cri

import (
	"context"
	"errors"
	"time"

	"github.com/containerd/log"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/runtime/metrics"
)

// PullImage pulls an image and returns its id, the same id ContainerStatus
// reports as image_ref.
func (s *Service) PullImage(ctx context.Context, r *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	ref := r.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("image.image is required")
	}
	var auth *image.Auth
	if a := r.Auth; a != nil {
		auth = &image.Auth{
			Username:      a.Username,
			Password:      a.Password,
			Auth:          a.Auth,
			ServerAddress: a.ServerAddress,
			IdentityToken: a.IdentityToken,
			RegistryToken: a.RegistryToken,
		}
	}
	start := time.Now()
	img, err := s.images.Pull(ctx, ref, auth)
	switch {
	case err == nil:
		metrics.ImagePull(metrics.PullSuccess, time.Since(start))
	case errors.Is(err, image.ErrNotFound):
		metrics.ImagePull(metrics.PullNotFound, time.Since(start))
	default:
		metrics.ImagePull(metrics.PullFailure, time.Since(start))
	}
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithField("image", img.ID).Infof("pulled %s", ref)
	return &runtime.PullImageResponse{ImageRef: img.ID}, nil
}
