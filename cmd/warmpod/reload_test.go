package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/warmpod/warmpod/runtime/image"
)

type fakeImages struct {
	got []image.Options
	err error
}

func (f *fakeImages) Reconfigure(o image.Options) error {
	if f.err != nil {
		return f.err
	}
	f.got = append(f.got, o)
	return nil
}

func TestChangedKeys(t *testing.T) {
	a, _ := finishConfig(defaultConfig())
	b := a
	b.LogLevel = "debug"
	b.Network.Bridge = "br9"
	b.Registry.Mirrors = map[string][]string{"docker.io": {"http://m"}}
	b.Runtime.Handlers = []string{"x"}
	b.Registry.ImagePullProgressTimeout.Duration = time.Second
	want := []string{"log_level", "network.bridge", "registry.mirrors", "registry.image_pull_progress_timeout", "runtime.handlers"}
	if got := changedKeys(a, b); !reflect.DeepEqual(got, want) {
		t.Errorf("changedKeys = %v, want %v", got, want)
	}
	if got := changedKeys(a, a); len(got) != 0 {
		t.Errorf("changedKeys of equal configs = %v", got)
	}
}

func TestReload(t *testing.T) {
	base, _ := finishConfig(defaultConfig())
	mirrors := map[string][]string{"docker.io": {"http://mirror"}}
	for _, tc := range []struct {
		name      string
		change    func(*Config)
		loadErr   error
		imagesErr error
		// wantLevel is the log level after the reload, wantMirrors the
		// registry settings the image store got (nil: none).
		wantLevel   logrus.Level
		wantMirrors map[string][]string
		wantLog     []string
	}{
		{"log level", func(c *Config) { c.LogLevel = "debug" }, nil, nil, logrus.DebugLevel, nil, []string{"reload: applied"}},
		{"registry", func(c *Config) { c.Registry.Mirrors = mirrors }, nil, nil, logrus.InfoLevel, mirrors, []string{"reload: applied"}},
		{"not reloadable", func(c *Config) { c.Network.Bridge = "br9"; c.LogLevel = "debug" }, nil, nil, logrus.DebugLevel, nil,
			[]string{"reload: applied", "take effect only when warmpod restarts"}},
		{"unchanged", func(*Config) {}, nil, nil, logrus.InfoLevel, nil, []string{"configuration unchanged"}},
		{"file does not load", nil, errors.New("bad toml"), nil, logrus.InfoLevel, nil, []string{"configuration not loaded"}},
		{"registry refused", func(c *Config) { c.Registry.Mirrors = mirrors; c.LogLevel = "debug" }, nil, errors.New("bad mirror"),
			logrus.InfoLevel, nil, []string{"registry settings refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger, hook := logtest.NewNullLogger()
			logger.SetLevel(logrus.InfoLevel)
			imgs := &fakeImages{err: tc.imagesErr}
			next := base
			r := &reloader{cfg: base, images: imgs, log: logrus.NewEntry(logger), load: func() (Config, error) {
				if tc.loadErr != nil {
					return Config{}, tc.loadErr
				}
				tc.change(&next)
				return next, nil
			}}
			r.reload()
			if logger.GetLevel() != tc.wantLevel {
				t.Errorf("log level %s, want %s", logger.GetLevel(), tc.wantLevel)
			}
			if tc.wantMirrors == nil && len(imgs.got) > 0 {
				t.Errorf("image store reconfigured: %+v", imgs.got)
			}
			if tc.wantMirrors != nil && (len(imgs.got) != 1 || !reflect.DeepEqual(imgs.got[0].Mirrors, tc.wantMirrors)) {
				t.Errorf("image store got %+v, want mirrors %v", imgs.got, tc.wantMirrors)
			}
			var msgs []string
			for _, e := range hook.AllEntries() {
				msgs = append(msgs, e.Message)
			}
			all := strings.Join(msgs, "\n")
			for _, w := range tc.wantLog {
				if !strings.Contains(all, w) {
					t.Errorf("log lacks %q:\n%s", w, all)
				}
			}
		})
	}
}
