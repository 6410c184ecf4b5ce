package cri

import (
	"context"
	"errors"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/image"
)

// ImageStatus reports an image; an image that is not present gives an empty
// response, not an error (api.proto).
func (s *Service) ImageStatus(ctx context.Context, r *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	ref := r.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("image.image is required")
	}
	img, err := s.images.Get(ref)
	if errors.Is(err, image.ErrNotFound) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: criImage(&img)}
	if r.Verbose {
		resp.Info = verboseInfo("info", map[string]any{
			"id":          img.ID,
			"platform":    img.Platform,
			"config":      img.Config,
			"layers":      img.Layers,
			"annotations": img.Annotations,
		})
	}
	return resp, nil
}
