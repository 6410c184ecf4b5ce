package oci

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzResolveUser resolves a user against an image's /etc/passwd and /etc/group, which image authors
// write, with /etc/passwd a symlink to a fuzzed target: it never panics, every error is ErrInvalidArgument,
// and the symlink never reaches the host's files (a passwd beside the layer names a user "intruder" that
// must never be found).
func FuzzResolveUser(f *testing.F) {
	f.Add(testPasswd, testGroup, "app", "")
	f.Add(testPasswd, testGroup, "www-data:staff", "../data/passwd")
	f.Add("root:x:0:0::/:/bin/sh\n", "", "intruder", "../../../passwd-outside")
	f.Add("a:x:1:1\n::::\n", "g:x:1:a,b,,\n", "1:1", "/data/passwd")
	f.Add(testPasswd, testGroup, "app", "/../../passwd-outside")
	f.Add("x:x:99999999999:1::/:/\n", "x:x:-1:\n", "x", "passwd")
	f.Fuzz(func(t *testing.T, passwd, group, user, link string) {
		base := t.TempDir()
		if err := os.WriteFile(filepath.Join(base, "passwd-outside"), []byte("intruder:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		layer := filepath.Join(base, "layer")
		for _, d := range []string{"etc", "data"} {
			if err := os.MkdirAll(filepath.Join(layer, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(layer, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
		passwdPath := filepath.Join(layer, "etc/passwd")
		if link != "" {
			if err := os.Symlink(link, passwdPath); err != nil {
				return // not a name the kernel takes
			}
			passwdPath = filepath.Join(layer, "data/passwd")
		}
		if err := os.WriteFile(passwdPath, []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
		u, err := resolveUser(&Security{}, &Image{User: user, Layers: []string{layer}})
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("resolveUser failed other than with ErrInvalidArgument: %v", err)
			}
			return
		}
		if u.UID == 4242 && user == "intruder" {
			t.Fatalf("user found in a passwd outside the image through /etc/passwd -> %q", link)
		}
	})
}
