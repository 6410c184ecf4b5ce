package cri

import (
	"context"
	"strconv"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/image"
)

// ListImages lists the stored images, or the one a filter names.
func (s *Service) ListImages(ctx context.Context, r *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	resp := &runtime.ListImagesResponse{Images: []*runtime.Image{}}
	if name := r.GetFilter().GetImage().GetImage(); name != "" {
		img, err := s.images.Get(name)
		if err != nil {
			return resp, nil
		}
		resp.Images = append(resp.Images, criImage(&img))
		return resp, nil
	}
	for _, img := range s.images.List() {
		resp.Images = append(resp.Images, criImage(&img))
	}
	return resp, nil
}

// criImage converts a stored image. The image's user becomes uid when it
// is numeric and username otherwise, as the kubelet's runAsNonRoot check
// expects.
func criImage(img *image.Image) *runtime.Image {
	out := &runtime.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Pinned:      img.Pinned,
		Spec:        &runtime.ImageSpec{Image: img.ID, Annotations: img.Annotations},
	}
	user := img.Config.User
	if i := strings.IndexByte(user, ':'); i >= 0 {
		user = user[:i]
	}
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		out.Uid = &runtime.Int64Value{Value: uid}
	} else if user != "" {
		out.Username = user
	}
	return out
}
