// Package broadcast hands each published value to every subscriber, in
// order, without ever blocking the publisher: a subscriber that falls a
// whole buffer behind is cut off (its channel closed) and must re-read the
// state it follows.
package broadcast

import "sync"

// Hub is a broadcaster of values of type T. It is safe for concurrent use.
type Hub[T any] struct {
	buffer int

	mu     sync.Mutex
	subs   map[chan T]struct{}
	closed bool
}

// New returns a hub whose subscribers may lag buffer values behind.
func New[T any](buffer int) *Hub[T] {
	return &Hub[T]{buffer: buffer, subs: make(map[chan T]struct{})}
}

// Subscribe returns a channel of the values published from now on and a
// function that ends the subscription and closes the channel.
func (h *Hub[T]) Subscribe() (<-chan T, func()) {
	ch := make(chan T, h.buffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch, func() {}
	}
	h.subs[ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// Publish hands v to every subscriber.
func (h *Hub[T]) Publish(v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- v:
		default:
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// Close ends every subscription; later subscriptions get closed channels.
func (h *Hub[T]) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}
