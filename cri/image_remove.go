package cri

import (
	"context"
	"errors"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/image"
)

// RemoveImage removes an image; its layers go once no container uses them.
func (s *Service) RemoveImage(ctx context.Context, r *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	ref := r.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("image.image is required")
	}
	// api.proto: "This call is idempotent, and must not return an error if
	// the image has already been removed."
	if err := s.images.Remove(ctx, ref); err != nil && !errors.Is(err, image.ErrNotFound) {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}
