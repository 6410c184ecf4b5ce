package main

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	cfg, cleanup, err := configure(options{
		warmpod: os.Args[0], private: "gpu", dir: dir, state: "/run/wpgpu-1", logLevel: "info",
		mirrors: listFlag{"docker.io=http://127.0.0.1:5000"}, insecure: "127.0.0.1:5000",
		daemonArgs: " --cdi-spec-dirs /cdi ",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the caller's --dir is gone after cleanup: %v", err)
	}
	if cfg.Root != filepath.Join(dir, "root") || cfg.State != "/run/wpgpu-1" || cfg.SocketPath() != "/run/wpgpu-1/warmpod.sock" ||
		cfg.LogPath != filepath.Join(dir, "warmpod.log") || cfg.LogLevel != "info" || cfg.CgroupParent == "" || !cfg.OwnProcessGroup {
		t.Errorf("private config %+v", cfg)
	}
	if !slices.Equal(cfg.Args, []string{"--cdi-spec-dirs", "/cdi"}) || !slices.Equal(cfg.Mirrors["docker.io"], []string{"http://127.0.0.1:5000"}) ||
		!slices.Equal(cfg.Insecure, []string{"127.0.0.1:5000"}) {
		t.Errorf("args %q, mirrors %v, insecure %q", cfg.Args, cfg.Mirrors, cfg.Insecure)
	}

	// On the daemon's defaults: nothing of its own, nothing to remove.
	cfg, _, err = configure(options{warmpod: os.Args[0], socket: "/run/warmpod/warmpod.sock", log: "/tmp/x.log"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "" || cfg.State != "" || cfg.ConfigPath != "" || cfg.Bridge != "" || cfg.CgroupParent != "" {
		t.Errorf("defaults config %+v", cfg)
	}

	for name, o := range map[string]options{
		"no binary":    {},
		"dir alone":    {warmpod: os.Args[0], dir: dir},
		"bad mirror":   {warmpod: os.Args[0], mirrors: listFlag{"docker.io"}},
		"bad tag":      {warmpod: os.Args[0], private: "TOOLONG", dir: dir},
		"missing file": {warmpod: filepath.Join(dir, "missing")},
	} {
		if _, _, err := configure(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRunCommandStatus(t *testing.T) {
	sigs := make(chan os.Signal)
	for _, tc := range []struct {
		cmd  []string
		want int
	}{
		{[]string{"sh", "-c", `test "$WARMPOD_SOCKET" = /s.sock`}, 0},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + int(syscall.SIGTERM)},
		{[]string{filepath.Join(t.TempDir(), "missing")}, 127},
	} {
		if got := runCommand(tc.cmd, "/s.sock", sigs); got != tc.want {
			t.Errorf("%q: status %d, want %d", tc.cmd, got, tc.want)
		}
	}
}
