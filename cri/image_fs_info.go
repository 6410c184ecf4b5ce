package cri

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageFsInfo reports the space the image store uses.
func (s *Service) ImageFsInfo(ctx context.Context, r *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	fs, err := s.images.FsInfo()
	if err != nil {
		return nil, err
	}
	usage := &runtime.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: fs.Mountpoint},
		UsedBytes:  &runtime.UInt64Value{Value: fs.UsedBytes},
		InodesUsed: &runtime.UInt64Value{Value: fs.InodesUsed},
	}
	return &runtime.ImageFsInfoResponse{ImageFilesystems: []*runtime.FilesystemUsage{usage}}, nil
}
