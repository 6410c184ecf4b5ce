package journal

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type obj struct {
	N int `json:"n"`
}

func values(t *testing.T, j *Journal) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := j.Each(func(id string, v json.RawMessage) error {
		var o obj
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		out[id] = o.N
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPutDeleteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := j.Put("a", obj{i}); err != nil {
			t.Fatal(err)
		}
	}
	j.Put("b", obj{7})
	j.Put("c", obj{8})
	j.Delete("b")
	j.Delete("nope")
	want := map[string]int{"a": 4, "c": 8}
	if got := values(t, j); len(got) != 2 || got["a"] != 4 || got["c"] != 8 {
		t.Fatalf("live = %v, want %v", got, want)
	}
	j.Close()
	if err := j.Put("x", obj{1}); err == nil {
		t.Error("put after close succeeded")
	}
	if err := j.Delete("a"); err == nil {
		t.Error("delete after close succeeded")
	}
	// A change that was not written is not kept either.
	if got := values(t, j); len(got) != 2 || got["a"] != 4 || got["c"] != 8 {
		t.Fatalf("live after failed changes = %v, want %v", got, want)
	}
	j2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if got := values(t, j2); len(got) != 2 || got["a"] != 4 || got["c"] != 8 {
		t.Fatalf("after reopen live = %v, want %v", got, want)
	}
	// Reopening compacts: one line per live id.
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n != 2 {
		t.Errorf("compacted journal has %d lines, want 2", n)
	}
	live, ids, err := Read(path)
	if err != nil || len(live) != 2 || len(ids) != 2 || ids[0] != "a" {
		t.Errorf("Read = %v %v %v", live, ids, err)
	}
}

func TestTornLineIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	j, _ := Open(path)
	j.Put("a", obj{1})
	j.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"id":"b","value":{"n":`)
	f.Close()
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if got := values(t, j); len(got) != 1 || got["a"] != 1 {
		t.Fatalf("live = %v", got)
	}
}

func TestCompactsAsItGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.log")
	j, _ := Open(path)
	defer j.Close()
	for i := 0; i < 3*compactAfter; i++ {
		if err := j.Put("a", obj{i}); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n > compactAfter+1 {
		t.Errorf("journal has %d lines after %d puts of one id", n, 3*compactAfter)
	}
	if got := values(t, j); got["a"] != 3*compactAfter-1 {
		t.Errorf("live = %v", got)
	}
}

func BenchmarkPut(b *testing.B) {
	j, _ := Open(filepath.Join(b.TempDir(), "j.log"))
	defer j.Close()
	v := obj{1}
	for i := 0; i < b.N; i++ {
		_ = j.Put("a", v)
	}
}

// TestPutLineBytes checks that Put writes each line as json.Marshal
// writes the line struct, escaping included, so that every reader of the
// format, old or new, sees the same bytes.
func TestPutLineBytes(t *testing.T) {
	ids := []string{"a", `quo"te`, `back\slash`, "ünïcødé 日本", "<script>&amp;</script>", "line\nsep\u2028\u2029", "ctl\x01\t", "del\x7f", "bad\xffutf8", "", strings.Repeat("0123456789abcdef", 4), "~!#$%'()*+,-./:;=?@[]^_`{|}"}
	vals := []any{
		obj{1},
		"<b>&</b> \u2028",
		map[string]any{"z": []int{1, 2}, "a": nil, "h": "<&>"},
		nil,
		json.RawMessage(` { "sp" : [ 1 , "<&>" ] } `),
		struct {
			S []string `json:"s,omitempty"`
			F float64  `json:"f"`
		}{[]string{"x", "\u00e9"}, 1.5e21},
	}
	for _, id := range ids {
		for _, v := range vals {
			path := filepath.Join(t.TempDir(), "j.log")
			j, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Put(id, v); err != nil {
				t.Fatal(err)
			}
			j.Close()
			val, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(&line{ID: id, Value: val})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, '\n')
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Put(%q, %#v) wrote\n%q, want\n%q", id, v, got, want)
			}
		}
	}
}

// BenchmarkPutRecord puts a value the size of a container's metadata.
func BenchmarkPutRecord(b *testing.B) {
	j, _ := Open(filepath.Join(b.TempDir(), "j.log"))
	defer j.Close()
	type mount struct {
		Container, Host string
		ReadOnly        bool
	}
	v := struct {
		ID, PodID, Image string
		Args, Env        []string
		Labels           map[string]string
		Mounts           []mount
	}{
		ID: strings.Repeat("0123456789abcdef", 4), PodID: strings.Repeat("fedcba9876543210", 4), Image: "registry.example/app@sha256:" + strings.Repeat("ab", 32),
		Args:   []string{"/bin/app", "--config", "/etc/app/config.yaml", "--listen", ":8080"},
		Labels: map[string]string{},
	}
	for i := range 20 {
		v.Env = append(v.Env, "VARIABLE_"+strings.Repeat("X", i)+"=value-"+strings.Repeat("y", 20))
		v.Labels["io.kubernetes.label."+strings.Repeat("l", i)] = "value-" + strings.Repeat("v", i)
	}
	for i := range 6 {
		v.Mounts = append(v.Mounts, mount{"/var/run/secrets/" + strings.Repeat("m", i), "/var/lib/kubelet/pods/" + v.PodID + "/volumes/" + strings.Repeat("h", i), i%2 == 0})
	}
	if data, _ := json.Marshal(v); len(data) < 2000 {
		b.Fatalf("value is %d bytes, want 2 KB or more", len(data))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = j.Put("a", v)
	}
}
