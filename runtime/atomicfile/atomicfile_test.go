package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, durable := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		write := Write
		if durable {
			write = WriteSync
		}
		for _, content := range []string{"old", "new"} {
			if err := write(path, []byte(content), 0o640); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != content {
				t.Errorf("content = %q, want %q", got, content)
			}
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != 0o640 {
			t.Errorf("mode = %v", st.Mode())
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("temporary files left: %v", entries)
		}
	}
	if err := Write(filepath.Join(t.TempDir(), "missing", "f"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}
