package broadcast

import "testing"

func TestHub(t *testing.T) {
	h := New[int](2)
	a, cancelA := h.Subscribe()
	b, _ := h.Subscribe()
	h.Publish(1)
	h.Publish(2)
	if v := <-a; v != 1 {
		t.Fatalf("a got %d", v)
	}
	// b is two behind with a buffer of two: one more and it is cut off.
	h.Publish(3)
	if got := []int{<-b, <-b}; got[0] != 1 || got[1] != 2 {
		t.Errorf("b got %v", got)
	}
	if _, ok := <-b; ok {
		t.Error("a subscriber that fell behind was not cut off")
	}
	if v := <-a; v != 2 {
		t.Errorf("a got %d", v)
	}
	cancelA()
	cancelA()
	h.Close()
	c, _ := h.Subscribe()
	if _, ok := <-c; ok {
		t.Error("subscription after close is open")
	}
}
