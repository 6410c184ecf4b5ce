package image

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
)

// progressLogInterval is how often a pull logs its progress at debug level.
const progressLogInterval = 10 * time.Second

// pullWatch follows one pull: the bytes its responses delivered, logged at debug level now and then, and,
// with a progress timeout, a deadline that moves with every byte. A pull that receives nothing for the
// timeout is cancelled with errNoProgress as its cause.
type pullWatch struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	bytes  atomic.Int64
	last   atomic.Int64 // unix nanoseconds of the last byte (or the start)
	done   chan struct{}
}

// errNoProgress is the cause of a pull cancelled for making no progress. It wraps
// context.DeadlineExceeded: the pull ran out of time.
type errNoProgress struct{ timeout time.Duration }

func (e errNoProgress) Error() string {
	return fmt.Sprintf("no data received for %s (image_pull_progress_timeout): the registry stalled", e.timeout)
}

func (e errNoProgress) Unwrap() error { return context.DeadlineExceeded }

func newPullWatch(ctx context.Context, ref string, timeout time.Duration) *pullWatch {
	l := log.G(ctx)
	w := &pullWatch{done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	start := time.Now()
	w.last.Store(start.UnixNano())
	tick := progressLogInterval
	if timeout > 0 {
		tick = min(tick, max(timeout/4, time.Millisecond))
	}
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		lastLog := start
		for {
			select {
			case <-w.done:
				return
			case <-w.ctx.Done():
				return
			case now := <-t.C:
				if timeout > 0 && now.Sub(time.Unix(0, w.last.Load())) >= timeout {
					w.cancel(errNoProgress{timeout})
					return
				}
				if now.Sub(lastLog) >= progressLogInterval {
					lastLog = now
					l.WithField("image", ref).Debugf("pulling: %d bytes in %s", w.bytes.Load(), now.Sub(start).Round(time.Second))
				}
			}
		}
	}()
	return w
}

// stop ends the watch; the pull's context is released.
func (w *pullWatch) stop() {
	close(w.done)
	w.cancel(nil)
}

// err is why the pull was cancelled: no progress, or its caller's context.
func (w *pullWatch) err() error { return context.Cause(w.ctx) }

// wrap counts the bytes of every response body rt delivers.
func (w *pullWatch) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil && resp.Body != nil {
			resp.Body = &countingBody{ReadCloser: resp.Body, w: w}
		}
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type countingBody struct {
	io.ReadCloser
	w *pullWatch
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.bytes.Add(int64(n))
		b.w.last.Store(time.Now().UnixNano())
	}
	return n, err
}
