package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/shim"
)

// What a container leaves in its termination message file is hostile: it
// reaches the kubelet's file bounded as the kubelet reads it, and neither
// file is used through a link or when it is not a regular file.
func TestCopyTermMessage(t *testing.T) {
	dir := t.TempDir()
	kubelet := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "0badf00d")
		if err := os.WriteFile(p, []byte("stale content of another run"), 0o666); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o666); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := strings.Repeat("x", 3*maxTermMessage) + "END"

	t.Run("message", func(t *testing.T) {
		dst := kubelet(t)
		if err := copyTermMessage(write("short", "done"), dst); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dst); string(got) != "done" {
			t.Errorf("kubelet file = %q, want %q", got, "done")
		}
	})
	t.Run("empty", func(t *testing.T) {
		dst := kubelet(t)
		if err := copyTermMessage(write("empty", ""), dst); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dst); len(got) != 0 {
			t.Errorf("kubelet file = %q, want it empty", got)
		}
	})
	t.Run("the last 4 KiB of a long one", func(t *testing.T) {
		dst := kubelet(t)
		if err := copyTermMessage(write("long", long), dst); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(dst)
		if len(got) != maxTermMessage || !bytes.HasSuffix(got, []byte("END")) {
			t.Errorf("kubelet file has %d bytes ending in %q, want %d ending in END", len(got), got[max(len(got)-3, 0):], maxTermMessage)
		}
	})
	t.Run("source through a link", func(t *testing.T) {
		dst := kubelet(t)
		link := filepath.Join(dir, "src-link")
		if err := os.Symlink(write("secret", "secret"), link); err != nil {
			t.Fatal(err)
		}
		if err := copyTermMessage(link, dst); err == nil {
			t.Error("a link was followed")
		}
		if got, _ := os.ReadFile(dst); strings.Contains(string(got), "secret") {
			t.Errorf("kubelet file = %q", got)
		}
	})
	t.Run("source a fifo", func(t *testing.T) {
		fifo := filepath.Join(dir, "fifo")
		if err := unix.Mkfifo(fifo, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := copyTermMessage(fifo, kubelet(t)); err == nil {
			t.Error("a fifo was read")
		}
	})
	t.Run("kubelet file a link", func(t *testing.T) {
		victim := write("victim", "untouched")
		link := filepath.Join(t.TempDir(), "0badf00d")
		if err := os.Symlink(victim, link); err != nil {
			t.Fatal(err)
		}
		if err := copyTermMessage(write("msg", "done"), link); err == nil {
			t.Error("the kubelet's file was written through a link")
		}
		if got, _ := os.ReadFile(victim); string(got) != "untouched" {
			t.Errorf("the link's target = %q", got)
		}
	})
	t.Run("kubelet file gone", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "0badf00d")
		if err := copyTermMessage(write("msg", "done"), dst); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(dst); err == nil {
			t.Error("the kubelet's file was made again")
		}
	})
}

// createWithTermFile creates container id with the kubelet's termination
// message file of it, kubeletFile, bound at /dev/termination-log.
func (f *fixture) createWithTermFile(id, kubeletFile string, args ...string) (shim.Record, bool) {
	f.t.Helper()
	var spec specs.Spec
	if err := json.Unmarshal(f.spec(args...), &spec); err != nil {
		f.t.Fatal(err)
	}
	spec.Mounts = append(spec.Mounts, specs.Mount{
		Destination: "/dev/termination-log", Type: "bind", Source: kubeletFile, Options: []string{"rbind", "rprivate", "rw"},
	})
	data, err := json.Marshal(&spec)
	if err != nil {
		f.t.Fatal(err)
	}
	rec, warm, err := f.s.Create(context.Background(), &CreateRequest{
		ID: id, Name: "main", Spec: data, Layers: []string{f.layer}, LogPath: filepath.Join(f.logDir, id+".log"),
		TerminationMessagePath: "/dev/termination-log",
	})
	if err != nil {
		f.t.Fatalf("create %s: %v", id, err)
	}
	return rec, warm
}

// The kubelet's containers each bind a termination message file of their
// own; the next one is still served from a pre-created generation, and
// what each writes there reaches its own kubelet file by the time its exit
// is recorded.
func TestTerminationMessageThroughWarmGeneration(t *testing.T) {
	f := newFixture(t, nil)
	ch, cancel := f.s.Subscribe()
	defer cancel()
	kubeletDir := t.TempDir()
	args := []string{"sh", "-c", "cat /proc/sys/kernel/random/uuid > /dev/termination-log; exit 88"}
	var msgs []string
	for i, id := range []string{"c1", "c2"} {
		kubeletFile := filepath.Join(kubeletDir, fmt.Sprintf("%08x", i))
		if err := os.WriteFile(kubeletFile, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		if _, warm := f.createWithTermFile(id, kubeletFile, args...); warm != (i > 0) {
			t.Errorf("%s: served warm = %v, want %v", id, warm, i > 0)
		}
		f.start(id)
		// The file holds the message when the exit is published.
		for e := range ch {
			if e.Container.ID == id && e.Type == shim.EventStopped {
				break
			}
		}
		data, err := os.ReadFile(kubeletFile)
		if err != nil || len(bytes.TrimSpace(data)) != 36 {
			t.Fatalf("%s: kubelet file = %q, %v; want a uuid", id, data, err)
		}
		msgs = append(msgs, string(data))
		if i == 0 {
			f.waitWarm(id)
		}
		if err := f.s.Remove(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if msgs[0] == msgs[1] {
		t.Errorf("both runs left %q: the second one's generation reused the first one's file", msgs[0])
	}
}
