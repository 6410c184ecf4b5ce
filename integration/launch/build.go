package launch

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Module is warmpod's module path.
const Module = "github.com/warmpod/warmpod"

// ModuleRoot is the repository's root: the nearest directory at or above
// the working directory whose go.mod declares [Module]. Modules nested in
// the repository (integration/e2e) are passed over.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if modulePath(filepath.Join(dir, "go.mod")) == Module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s at or above the working directory", Module)
		}
		dir = parent
	}
}

// modulePath is the module a go.mod declares ("" when unreadable).
func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// goCommand is the go tool: the one on PATH, else the one where the CI
// image installs it.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// GoBuild compiles the module's package pkg (an import path) into dir,
// named after its last element, with flags before the package as the
// Makefile gives them, and returns the binary's path.
func GoBuild(dir, pkg string, flags ...string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, path.Base(pkg))
	if !filepath.IsAbs(out) {
		if out, err = filepath.Abs(out); err != nil {
			return "", err
		}
	}
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.Command(goCommand(), args...)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", path.Base(pkg), err, msg)
	}
	return out, nil
}

// Binary returns the daemon binary: prebuilt when it is set (another
// revision to compare with, or what "make build" made), else one built
// from the repository into dir with the Makefile's tags.
func Binary(prebuilt, dir string) (string, error) {
	if prebuilt == "" {
		return GoBuild(dir, Module+"/cmd/warmpod", "-tags", "seccomp")
	}
	abs, err := filepath.Abs(prebuilt)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("warmpod binary: %w", err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("warmpod binary %s: %w", abs, errors.New("not an executable file"))
	}
	return abs, nil
}
