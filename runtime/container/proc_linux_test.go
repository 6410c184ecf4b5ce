package container

import (
	"errors"
	"io"
	"os"
	"testing"
)

func TestStdioWrite(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := Stdio{Stdin: w}
	if _, err := s.Write([]byte("in")); err != nil {
		t.Fatalf("write to stdin pipe: %v", err)
	}
	w.Close()
	if got, _ := io.ReadAll(r); string(got) != "in" {
		t.Errorf("stdin pipe got %q, want %q", got, "in")
	}
	if _, err := (&Stdio{}).Write([]byte("x")); !errors.Is(err, ErrNoStdin) {
		t.Errorf("write without stdin = %v, want ErrNoStdin", err)
	}
}
