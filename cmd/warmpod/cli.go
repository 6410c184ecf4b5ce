package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v3"
)

// usageError is a bad command line or configuration: reported in one line,
// exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// newCommand is warmpod's command line. Without a command it runs the
// daemon: serve is called with the configuration its flags and file give,
// and a function that reads the file again with the same flags (for a
// reload). Flags are parsed anew for every command returned.
func newCommand(serve func(cfg Config, reload func() (Config, error)) error) *cli.Command {
	daemonFlags := flags()
	for _, f := range daemonFlags {
		// The daemon's flags belong to the daemon, not to its commands.
		setLocal(f)
	}
	onUsage := func(_ context.Context, _ *cli.Command, err error, _ bool) error { return usageError{err} }
	return &cli.Command{
		Name:  "warmpod",
		Usage: "a CRI runtime for Kubernetes that restarts pods' containers in place",
		Description: "Without a command, warmpod runs the daemon. Settings come from the defaults, then the TOML\n" +
			"file (--config), then the flags; each overrides the one before. An unknown key in the file is an error.",
		Version:      version,
		Flags:        daemonFlags,
		OnUsageError: onUsage,
		// --registry-mirror host=a,b is one value: the endpoints are its
		// own list.
		DisableSliceFlagSeparator: true,
		Action: func(_ context.Context, cmd *cli.Command) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return usageError{err}
			}
			return serve(cfg, func() (Config, error) { return loadConfig(cmd) })
		},
		Commands: []*cli.Command{
			{
				Name:         "config",
				Usage:        "show the configuration",
				OnUsageError: onUsage,
				Commands: []*cli.Command{{
					Name:         "default",
					Usage:        "print the default configuration, every key, as TOML",
					OnUsageError: onUsage,
					Action: func(_ context.Context, cmd *cli.Command) error {
						return writeDefaultConfig(cmd.Root().Writer)
					},
				}},
			},
			{
				Name:         "version",
				Usage:        "print warmpod's version and those of the runc, libseccomp and CRI API it was built with",
				OnUsageError: onUsage,
				Action: func(_ context.Context, cmd *cli.Command) error {
					printVersion(cmd.Root().Writer)
					return nil
				},
			},
		},
	}
}

// setLocal keeps a flag to the command that declares it.
func setLocal(f cli.Flag) {
	switch f := f.(type) {
	case *cli.StringFlag:
		f.Local = true
	case *cli.BoolFlag:
		f.Local = true
	case *cli.IntFlag:
		f.Local = true
	case *cli.Int64Flag:
		f.Local = true
	case *cli.StringSliceFlag:
		f.Local = true
	case *cli.DurationFlag:
		f.Local = true
	default:
		panic(fmt.Sprintf("flag %v: unexpected type %T", f.Names(), f))
	}
}

func init() {
	cli.VersionPrinter = func(cmd *cli.Command) { printVersion(cmd.Root().Writer) }
}

// exitStatus maps the error of a run to warmpod's exit status.
func exitStatus(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}
