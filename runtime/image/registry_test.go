package image

import (
	"strings"
	"testing"

	"github.com/warmpod/warmpod/integration/testimages"
)

func TestReconfigure(t *testing.T) {
	requireRoot(t)
	upstreamImg := busybox(t, testimages.WithCmd("echo", "upstream"))
	mirrorImg := busybox(t, testimages.WithCmd("echo", "mirror"))
	up := startRegistry(t)
	m := startRegistry(t)
	push(t, up, "app:1", upstreamImg)
	push(t, m, "app:1", mirrorImg)

	s := newStore(t)
	pull := func() string {
		t.Helper()
		img, err := s.Pull(t.Context(), up.Ref("app:1"), nil)
		if err != nil {
			t.Fatalf("Pull: %v", err)
		}
		return img.ID
	}
	if got := pull(); got != configDigest(t, upstreamImg) {
		t.Fatalf("without a mirror: got %s, want upstream's image", got)
	}
	if err := s.Reconfigure(Options{Mirrors: map[string][]string{up.Addr(): {"http://" + m.Addr()}}}); err != nil {
		t.Fatal(err)
	}
	if got := pull(); got != configDigest(t, mirrorImg) {
		t.Fatalf("after adding the mirror: got %s, want the mirror's image", got)
	}
	// A bad configuration is refused and the one in force stays.
	err := s.Reconfigure(Options{Mirrors: map[string][]string{up.Addr(): {"ftp://" + m.Addr()}}})
	if err == nil || !strings.Contains(err.Error(), "ftp") {
		t.Fatalf("Reconfigure with an ftp mirror: %v, want an error naming it", err)
	}
	if got := pull(); got != configDigest(t, mirrorImg) {
		t.Fatalf("after a refused configuration: got %s, want the mirror's image still", got)
	}
}
