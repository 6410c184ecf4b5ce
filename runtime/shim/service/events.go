package service

import (
	"sync"
	"time"
)

// eventBuffer is how many events a subscriber may lag behind before it is
// cut off; a cut-off subscriber sees its channel closed and must re-list.
const eventBuffer = 4096

// fanoutTimeout is how long a container's output waits for a slow attached
// client before that client is cut off.
const fanoutTimeout = 5 * time.Second

// fanout copies a container's output stream to attached clients. It is the
// tee of the log copier, so it must not stall the container for long.
type fanout struct {
	mu   sync.Mutex
	subs map[chan []byte]struct{}
}

func newFanout() *fanout { return &fanout{subs: make(map[chan []byte]struct{})} }

func (f *fanout) subscribe() (<-chan []byte, func()) {
	ch := make(chan []byte, 256)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[ch]; ok {
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// Write implements io.Writer for logs.Copy.
func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return len(p), nil
	}
	b := append([]byte(nil), p...)
	for ch := range f.subs {
		select {
		case ch <- b:
		case <-time.After(fanoutTimeout):
			delete(f.subs, ch)
			close(ch)
		}
	}
	return len(p), nil
}
