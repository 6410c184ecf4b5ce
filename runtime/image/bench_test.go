package image

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/warmpod/warmpod/integration/testimages"
)

// BenchmarkPullBusybox measures a cold pull of the busybox image from an in-process registry: manifest,
// config, one ~1 MB gzip layer streamed, verified, unpacked (~270 hardlinks), synced and recorded.
func BenchmarkPullBusybox(b *testing.B) {
	requireRoot(b)
	reg := startRegistry(b)
	ref := push(b, reg, "busybox:latest", busybox(b))
	dir := b.TempDir()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s, err := New(context.Background(), Options{Root: filepath.Join(dir, strconv.Itoa(i))})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Pull(b.Context(), ref, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Remove(context.Background(), ref); err != nil {
			b.Fatal(err)
		}
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkImportBusybox measures importing a docker archive of busybox: spool, index, unpack, record.
func BenchmarkImportBusybox(b *testing.B) {
	requireRoot(b)
	var archive bytes.Buffer
	if err := testimages.WriteDockerArchive(&archive, map[string]v1.Image{"busybox:latest": busybox(b)}); err != nil {
		b.Fatal(err)
	}
	s := newStore(b)
	b.ReportAllocs()
	b.SetBytes(int64(archive.Len()))
	for b.Loop() {
		imgs, err := s.Import(b.Context(), bytes.NewReader(archive.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Remove(context.Background(), imgs[0].ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
