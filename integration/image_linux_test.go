package integration

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func pullImage(t testing.TB, ref string) string {
	t.Helper()
	resp, err := d.Image.PullImage(testCtx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("PullImage %s: %v", ref, err)
	}
	return resp.ImageRef
}

func imageStatus(t testing.TB, ref string, verbose bool) *runtimeapi.ImageStatusResponse {
	t.Helper()
	resp, err := d.Image.ImageStatus(testCtx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: verbose})
	if err != nil {
		t.Fatalf("ImageStatus %s: %v", ref, err)
	}
	return resp
}

func TestPullImage(t *testing.T) {
	begin(t)
	repo := strings.TrimSuffix(images.busyboxDirect, ":latest")
	for _, tc := range []struct{ name, ref string }{
		{"short name through the docker.io mirror", "busybox"},
		{"tag through the docker.io mirror", images.busybox},
		{"other tag of the same image", "docker.io/library/busybox:stable"},
		{"tag on the registry itself", images.busyboxDirect},
		{"digest through the docker.io mirror", "docker.io/library/busybox@" + images.busyboxDigest},
		{"digest on the registry itself", repo + "@" + images.busyboxDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pullImage(t, tc.ref)
			if ref != images.busyboxID {
				t.Errorf("PullImage %s = %q, want the image id %s", tc.ref, ref, images.busyboxID)
			}
			st := imageStatus(t, tc.ref, false)
			if st.Image == nil {
				t.Fatalf("ImageStatus %s: image not found after pulling it", tc.ref)
			}
			if st.Image.Id != images.busyboxID {
				t.Errorf("ImageStatus %s id %q, want %s", tc.ref, st.Image.Id, images.busyboxID)
			}
		})
	}
}

func TestPullMissingImage(t *testing.T) {
	ctx := begin(t)
	repo := strings.TrimSuffix(images.busyboxDirect, ":latest")
	for _, tc := range []struct {
		name, ref string
		code      codes.Code
	}{
		{"missing tag", repo + ":missing", codes.NotFound},
		{"missing repository", reg.Ref("library/no-such-image:latest"), codes.NotFound},
		{"missing digest", repo + "@sha256:" + strings.Repeat("0", 64), codes.NotFound},
		{"invalid reference", "Bad Ref!", codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Image.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tc.ref}})
			wantCode(t, err, tc.code, tc.ref)
		})
	}
	// Through the mirror, the registry behind it (docker.io, unreachable
	// here) is asked next, so the answer is that failure rather than
	// NotFound; it must still name the image.
	t.Run("missing tag through the docker.io mirror", func(t *testing.T) {
		ref := "docker.io/library/busybox:no-such-tag"
		_, err := d.Image.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err == nil || !strings.Contains(err.Error(), ref) {
			t.Errorf("PullImage %s = %v, want an error naming the image", ref, err)
		}
	})
}

func TestListAndInspectImages(t *testing.T) {
	ctx := begin(t)
	pullImage(t, images.busybox)
	list, err := d.Image.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var found *runtimeapi.Image
	for _, img := range list.Images {
		if img.Id == images.busyboxID {
			found = img
		}
	}
	if found == nil {
		t.Fatalf("ListImages has no image %s: %v", images.busyboxID, list.Images)
	}
	if !slices.Contains(found.RepoTags, images.busybox) {
		t.Errorf("repo tags %q lack %s", found.RepoTags, images.busybox)
	}
	wantDigest := "docker.io/library/busybox@" + images.busyboxDigest
	if !slices.Contains(found.RepoDigests, wantDigest) {
		t.Errorf("repo digests %q lack %s", found.RepoDigests, wantDigest)
	}
	if found.GetSize() == 0 {
		t.Error("image size is 0")
	}

	filtered, err := d.Image.ListImages(ctx, &runtimeapi.ListImagesRequest{
		Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: images.busybox}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(filtered.Images) != 1 || filtered.Images[0].Id != images.busyboxID {
		t.Errorf("ListImages filtered by %s = %v, want just %s", images.busybox, filtered.Images, images.busyboxID)
	}

	for _, ref := range []string{images.busybox, images.busyboxID, wantDigest} {
		st := imageStatus(t, ref, true)
		if st.Image == nil || st.Image.Id != images.busyboxID {
			t.Errorf("ImageStatus %s = %v, want image %s", ref, st.Image, images.busyboxID)
			continue
		}
		if len(st.Info) == 0 {
			t.Errorf("verbose ImageStatus %s has no info", ref)
		}
	}

	// CRI: an image that is not present is answered with no image, not an
	// error.
	st := imageStatus(t, "docker.io/library/busybox:never-pulled", false)
	if st.Image != nil {
		t.Errorf("ImageStatus of an image never pulled = %v, want none", st.Image)
	}
}

func TestRemoveImage(t *testing.T) {
	ctx := begin(t)
	id := pullImage(t, images.noCmd)
	if _, err := d.Image.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: images.noCmd}}); err != nil {
		t.Fatalf("RemoveImage: %v", err)
	}
	for _, ref := range []string{images.noCmd, id} {
		if st := imageStatus(t, ref, false); st.Image != nil {
			t.Errorf("ImageStatus %s after RemoveImage = %v, want none", ref, st.Image)
		}
	}
	list, err := d.Image.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range list.Images {
		if img.Id == id {
			t.Errorf("ListImages still has the removed image %s", id)
		}
	}
	// Removing an image that is gone succeeds, as CRI asks.
	if _, err := d.Image.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: images.noCmd}}); err != nil {
		t.Errorf("RemoveImage of a removed image: %v", err)
	}
}

func TestImageFsInfo(t *testing.T) {
	ctx := begin(t)
	pullImage(t, images.busybox)
	resp, err := d.Image.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ImageFilesystems) == 0 {
		t.Fatal("no image filesystems")
	}
	fs := resp.ImageFilesystems[0]
	mp := fs.GetFsId().GetMountpoint()
	if rel, err := filepath.Rel(d.Root, mp); err != nil || strings.HasPrefix(rel, "..") {
		t.Errorf("image filesystem mountpoint %q is not under the daemon root %s", mp, d.Root)
	}
	if fs.GetUsedBytes().GetValue() == 0 {
		t.Error("image filesystem uses 0 bytes with busybox pulled")
	}
	if fs.GetInodesUsed().GetValue() == 0 {
		t.Error("image filesystem uses 0 inodes with busybox pulled")
	}
}
