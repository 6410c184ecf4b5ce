package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Limits bounds what one pull or import may make the store read, hold in memory and write: image content is
// untrusted, and a small layer or manifest must not fill the disk or the daemon's memory. A zero field
// takes its default.
type Limits struct {
	// LayerSize bounds one layer: its blob as stored, its uncompressed tar stream, and the total size of
	// the files it unpacks to (a sparse file counts at its full size, though it is written sparse).
	LayerSize int64
	// ImageSize bounds the total size of the files one pull or import unpacks, over all its layers.
	ImageSize int64
	// LayerEntries bounds the entries (files, directories, links, whiteouts) of one layer, and
	// ImageEntries their total over the layers one pull or import unpacks: each is an inode.
	LayerEntries int64
	ImageEntries int64
	// ManifestSize bounds each manifest, index and config, which are read whole into memory.
	ManifestSize int64
}

// The defaults leave room for the largest images in common use (machine learning images with layers of
// several GiB) and still stop a hostile one long before it fills a node's disk or memory.
const (
	DefaultMaxLayerSize    = 32 << 30
	DefaultMaxImageSize    = 64 << 30
	DefaultMaxLayerEntries = 1 << 20
	DefaultMaxImageEntries = 2 << 20
	// DefaultMaxManifestSize is what containers/image allows manifests and configs (4 MiB); containerd's
	// and go-containerregistry's own caps are larger.
	DefaultMaxManifestSize = 4 << 20
)

// withDefaults fills the zero fields; negative ones are refused.
func (l Limits) withDefaults() (Limits, error) {
	for _, f := range []struct {
		name string
		v    *int64
		def  int64
	}{
		{"layer size", &l.LayerSize, DefaultMaxLayerSize},
		{"image size", &l.ImageSize, DefaultMaxImageSize},
		{"layer entries", &l.LayerEntries, DefaultMaxLayerEntries},
		{"image entries", &l.ImageEntries, DefaultMaxImageEntries},
		{"manifest size", &l.ManifestSize, DefaultMaxManifestSize},
	} {
		if *f.v < 0 {
			return l, fmt.Errorf("limit on %s is negative: %d", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return l, nil
}

// budget is what the layers of one pull or import may still unpack, shared by the layers unpacked in
// parallel.
type budget struct {
	limits      Limits
	left        atomic.Int64 // bytes of files
	entriesLeft atomic.Int64
}

func newBudget(l Limits) *budget {
	b := &budget{limits: l}
	b.left.Store(l.ImageSize)
	b.entriesLeft.Store(l.ImageEntries)
	return b
}

// take charges n bytes of files to the image; false when that is over its limit.
func (b *budget) take(n int64) bool {
	return b.left.Add(-n) >= 0
}

// takeEntry charges one entry to the image; false when that is over its limit.
func (b *budget) takeEntry() bool {
	return b.entriesLeft.Add(-1) >= 0
}

// limitReader reads at most max bytes from r; reading beyond fails with err, so a stream that is too long
// is an error, never a silent truncation.
type limitReader struct {
	r    io.Reader
	left int64
	err  func() error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, l.err()
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, l.err()
	}
	return n, err
}

// manifestLimit caps the body of every manifest response (image manifests and indexes) at max bytes,
// below go-containerregistry's own cap of 100 MiB: a manifest is read whole into memory and parsed.
type manifestLimit struct {
	base http.RoundTripper
	max  int64
}

func (m *manifestLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := m.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	tooLarge := func() error {
		return fmt.Errorf("manifest %s is larger than the limit of %d bytes: %w", req.URL.Path, m.max, ErrInvalidImage)
	}
	if resp.ContentLength > m.max {
		resp.Body.Close()
		return nil, tooLarge()
	}
	resp.Body = &limitedBody{limitReader: limitReader{r: resp.Body, left: m.max, err: tooLarge}, c: resp.Body}
	return resp, nil
}

type limitedBody struct {
	limitReader
	c io.Closer
}

func (b *limitedBody) Close() error { return b.c.Close() }

// contentErr classifies an error met reading what a registry or archive sent: content that does not
// match its digest or size, does not parse or breaks a limit makes the image invalid; a cancelled pull, a
// network failure or a registry's error answer is passed on as it is.
func contentErr(err error) error {
	var (
		urlErr   *url.Error
		netErr   net.Error
		transErr *transport.Error
	)
	switch {
	case errors.Is(err, ErrInvalidImage), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &urlErr), errors.As(err, &netErr), errors.As(err, &transErr):
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalidImage, err)
}
