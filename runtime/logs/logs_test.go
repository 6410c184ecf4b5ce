package logs

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCopy(t *testing.T) {
	long := strings.Repeat("x", MaxLineSize+10)
	tests := []struct {
		name  string
		input string
		want  []string // "<tag> <content>"
	}{
		{"full lines", "a\nb\n", []string{"F a", "F b"}},
		{"unterminated last line", "a\nb", []string{"F a", "P b"}},
		{"crlf", "a\r\n", []string{"F a"}},
		{"empty line", "\n", []string{"F "}},
		{"long line split", long + "\n", []string{"P " + long[:MaxLineSize], "F " + long[MaxLineSize:]}},
	}
	re := regexp.MustCompile(`^(\S+) stdout ([PF]) (.*)$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c", "0.log")
			l, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			var tee strings.Builder
			if err := Copy(l, Stdout, strings.NewReader(tt.input), &tee); err != nil {
				t.Fatal(err)
			}
			l.Close()
			if tee.String() != tt.input {
				t.Errorf("tee got %q, want %q", tee.String(), tt.input)
			}
			data, _ := os.ReadFile(path)
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d records %q, want %d", len(lines), lines, len(tt.want))
			}
			for i, line := range lines {
				m := re.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("record %q is not in CRI format", line)
				}
				if got := m[2] + " " + m[3]; got != tt.want[i] {
					t.Errorf("record %d = %.40q, want %.40q", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, w := io.Pipe()
	done := make(chan error)
	go func() { done <- Copy(l, Stderr, r, nil) }()
	io.WriteString(w, "before\n")
	waitForContent(t, path, "before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "after\n")
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "stderr F before") || strings.Contains(string(old), "after") {
		t.Errorf("rotated file = %q", old)
	}
	if !strings.Contains(string(cur), "stderr F after") || strings.Contains(string(cur), "before") {
		t.Errorf("new file = %q", cur)
	}
}

func TestDiscard(t *testing.T) {
	l, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	if err := Copy(l, Stdout, strings.NewReader("x\n"), nil); err != nil {
		t.Fatal(err)
	}
	// No log at all drops the output too, rather than crash the copier.
	if err := Copy(nil, Stdout, strings.NewReader("x\n"), nil); err != nil {
		t.Fatal(err)
	}
}

// waitForContent waits until the copier has written want to path.
func waitForContent(t *testing.T, path, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if data, _ := os.ReadFile(path); strings.Contains(string(data), want) {
			return
		}
	}
	t.Fatalf("%s never contained %q", path, want)
}

// TestTeeBeforeNewline checks that output without a newline reaches the
// tee at once, before the line is complete.
func TestTeeBeforeNewline(t *testing.T) {
	l, _ := Open("")
	r, w := io.Pipe()
	got := make(chan string, 1)
	tee := writerFunc(func(p []byte) (int, error) {
		select {
		case got <- string(p):
		default:
		}
		return len(p), nil
	})
	go func() { _ = Copy(l, Stdout, r, tee) }()
	io.WriteString(w, "prompt> ")
	select {
	case s := <-got:
		if s != "prompt> " {
			t.Errorf("tee got %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a partial line never reached the tee")
	}
	w.Close()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
