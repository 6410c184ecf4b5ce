package sandbox

import (
	"encoding/json"
	"testing"

	"github.com/containerd/errdefs"
)

// TestContainerRecordOfOlderDaemon loads a container record written when
// the metadata still held the image's stop signal: the field is ignored.
func TestContainerRecordOfOlderDaemon(t *testing.T) {
	s, err := newMetaStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	old := json.RawMessage(`{"id":"c1","podID":"p1","config":{"name":"app","stopSignal":"SIGUSR1"},` +
		`"imageID":"sha256:abc","imageName":"busybox","createdAt":7,"logPath":"/l","stopSignal":15,"user":{"uid":1}}`)
	if err := s.put("containers", "c1", old); err != nil {
		t.Fatal(err)
	}
	var got []containerEntry
	errs := s.load("containers", func(data []byte) error {
		var entry containerEntry
		if err := json.Unmarshal(data, &entry); err != nil {
			return err
		}
		got = append(got, entry)
		return nil
	})
	if len(errs) > 0 || len(got) != 1 {
		t.Fatalf("load = %v, %v", got, errs)
	}
	m := got[0].containerMeta
	if m.ID != "c1" || m.PodID != "p1" || m.Config.Name != "app" || m.Config.StopSignal != "SIGUSR1" ||
		m.ImageID != "sha256:abc" || m.ImageName != "busybox" || m.CreatedAt != 7 || m.LogPath != "/l" ||
		m.User == nil || m.User.UID != 1 {
		t.Errorf("record = %+v", m)
	}
}

// A creation's settle ends only its own: after a rollback released the
// name, another request may reserve it before the first settles, and
// waiters must then wait for that one.
func TestRegistrarCreate(t *testing.T) {
	r := newRegistrar()
	settleA, _, err := r.create("n", "a")
	if err != nil {
		t.Fatal(err)
	}
	_, busy, err := r.create("n", "b")
	if !errdefs.IsAlreadyExists(err) || busy == nil {
		t.Fatalf("create while a creates = %v, busy %v; want AlreadyExists and a channel", err, busy)
	}
	r.release("n") // a rolls back
	settleC, _, err := r.create("n", "c")
	if err != nil {
		t.Fatalf("create after the rollback: %v", err)
	}
	settleA()
	select {
	case <-busy:
	default:
		t.Error("a settled, but its waiters were not woken")
	}
	if _, busy, _ := r.create("n", "d"); busy == nil {
		t.Error("a's settle ended c's creation")
	}
	settleC()
	if _, busy, err := r.create("n", "d"); !errdefs.IsAlreadyExists(err) || busy != nil {
		t.Errorf("create after c settled = %v, busy %v; want AlreadyExists and no channel (c exists)", err, busy)
	}
	if err := r.reserve("n", "c"); err != nil {
		t.Errorf("reserve by the owner: %v", err)
	}
}
