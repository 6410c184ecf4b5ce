package main

import (
	"encoding"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/image"
)

// reloadable are the settings a SIGHUP applies to the running daemon (a
// key, or a table and everything in it); every other change waits for a
// restart.
var reloadable = []string{"log_level", "registry"}

// reloader applies a re-read configuration to the running daemon.
type reloader struct {
	cfg    Config
	load   func() (Config, error)
	images interface{ Reconfigure(image.Options) error }
	log    *logrus.Entry
}

// reload re-reads the configuration (the file, and the flags the daemon was
// started with), applies what can change while it runs and logs what
// cannot. A configuration that does not load, or registry settings the
// image store refuses, leave everything as it was.
func (r *reloader) reload() {
	notifySystemd(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer notifySystemd(daemon.SdNotifyReady)
	cfg, err := r.load()
	if err != nil {
		r.log.WithError(err).Error("reload: configuration not loaded; nothing changed")
		return
	}
	changed := changedKeys(r.cfg, cfg)
	if len(changed) == 0 {
		r.log.Info("reload: configuration unchanged")
		return
	}
	var applied, pending []string
	for _, k := range changed {
		if isReloadable(k) {
			applied = append(applied, k)
		} else {
			pending = append(pending, k)
		}
	}
	if !reflect.DeepEqual(r.cfg.Registry, cfg.Registry) {
		if err := r.images.Reconfigure(registryOptions(cfg.Registry)); err != nil {
			r.log.WithError(err).Error("reload: registry settings refused; nothing changed")
			return
		}
	}
	if cfg.LogLevel != r.cfg.LogLevel {
		level, err := logrus.ParseLevel(cfg.LogLevel)
		if err != nil {
			r.log.WithError(err).Error("reload: log level refused")
			return
		}
		r.log.Logger.SetLevel(level)
	}
	// What was not applied stays as it was, so that the next reload reports
	// it again.
	next := r.cfg
	next.LogLevel = cfg.LogLevel
	next.Registry = cfg.Registry
	r.cfg = next
	if len(applied) > 0 {
		r.log.WithField("settings", strings.Join(applied, ",")).Info("reload: applied")
	}
	if len(pending) > 0 {
		r.log.WithField("settings", strings.Join(pending, ",")).Warn("reload: changed settings that take effect only when warmpod restarts")
	}
}

func isReloadable(key string) bool {
	for _, r := range reloadable {
		if key == r || strings.HasPrefix(key, r+".") {
			return true
		}
	}
	return false
}

// changedKeys lists the TOML keys whose values differ between a and b.
func changedKeys(a, b Config) []string {
	var out []string
	var walk func(va, vb reflect.Value, prefix string)
	walk = func(va, vb reflect.Value, prefix string) {
		t := va.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fa, fb := va.Field(i), vb.Field(i)
			if isTable(fa.Type()) {
				walk(fa, fb, prefix+name+".")
				continue
			}
			if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
				out = append(out, prefix+name)
			}
		}
	}
	walk(reflect.ValueOf(a), reflect.ValueOf(b), "")
	return out
}

// notifySystemd sends state to systemd when the daemon runs under it
// (NOTIFY_SOCKET); elsewhere it does nothing.
func notifySystemd(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		logrus.WithError(err).Warn("notify systemd")
	}
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now().UnixMicro()
	}
	return ts.Nano() / 1000
}

// isTable tells a TOML table (a struct) from a value a struct holds (a
// duration).
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !t.Implements(reflect.TypeFor[encoding.TextMarshaler]())
}
