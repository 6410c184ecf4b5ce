// Command warmpodctl is warmpod's command-line client: pod resets, pod
// status, image import, and the reset benchmark (which works against any
// CRI runtime).
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const defaultSocket = "/run/warmpod/warmpod.sock"

// socketEnv names the socket when --socket is not given; crictl's variable
// is read after it.
const (
	socketEnv = "WARMPOD_SOCKET"
	criEnv    = "CONTAINER_RUNTIME_ENDPOINT"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The first interrupt cancels the command, which then cleans up (the
	// benchmark removes its pods); a second one ends warmpodctl at once.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "warmpodctl: interrupted; cleaning up (interrupt again to quit at once)")
		cancel()
	}()
	err := newCommand().Run(ctx, os.Args)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "warmpodctl:", err)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		os.Exit(2)
	case ctx.Err() != nil:
		os.Exit(130)
	}
	os.Exit(1)
}

// usageError is a bad command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func onUsageError(_ context.Context, _ *cli.Command, err error, _ bool) error {
	return usageError{err}
}

// newCommand is warmpodctl's command line. --socket and --timeout are
// accepted anywhere on it, before or after the command.
func newCommand() *cli.Command {
	return &cli.Command{
		Name:  "warmpodctl",
		Usage: "warmpod's client: pod resets and status, image import, the reset benchmark",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "socket",
				Usage:   "warmpod's socket: a path or a unix:// endpoint",
				Value:   defaultSocket,
				Sources: cli.EnvVars(socketEnv, criEnv),
			},
			&cli.DurationFlag{Name: "timeout", Usage: "timeout of a single command (not of a benchmark)", Value: 2 * time.Minute},
		},
		HideVersion:  true,
		OnUsageError: onUsageError,
		Action:       groupAction,
		Commands: []*cli.Command{
			group("pod", "reset a pod or show its status",
				&cli.Command{
					Name:         "reset",
					Usage:        "restart every container of a pod in place; returns once its main containers run",
					ArgsUsage:    "POD_ID",
					OnUsageError: onUsageError,
					Action:       withTimeout(podReset),
				},
				&cli.Command{
					Name:         "status",
					Usage:        "show a pod's reset condition, and each container's restarts, last termination and warm generation",
					ArgsUsage:    "POD_ID",
					OnUsageError: onUsageError,
					Action:       withTimeout(podStatus),
				},
			),
			group("image", "load images",
				&cli.Command{
					Name:         "import",
					Usage:        "load an OCI layout or docker-archive tarball",
					ArgsUsage:    "FILE",
					OnUsageError: onUsageError,
					Action:       withTimeout(imageImport),
				},
			),
			group("bench", "benchmarks", benchResetCommand()),
			{
				Name:         "version",
				Usage:        "show warmpodctl's version and the daemon's",
				OnUsageError: onUsageError,
				Action:       withTimeout(versions),
			},
		},
	}
}

// version is set at link time.
var version = "dev"

// group is a command that only holds commands: alone it prints its help,
// with anything else it is a usage error.
func group(name, usage string, commands ...*cli.Command) *cli.Command {
	return &cli.Command{
		Name:         name,
		Usage:        usage,
		OnUsageError: onUsageError,
		Commands:     commands,
		Action:       groupAction,
	}
}

func groupAction(ctx context.Context, cmd *cli.Command) error {
	if cmd.Args().Len() == 0 {
		if cmd.Root() == cmd {
			return cli.ShowRootCommandHelp(cmd)
		}
		return cli.ShowSubcommandHelp(cmd)
	}
	return usageError{fmt.Errorf("%q is not a command of %q; see %s --help", cmd.Args().First(), cmd.FullName(), cmd.FullName())}
}

// withTimeout runs action under the --timeout deadline.
func withTimeout(action cli.ActionFunc) cli.ActionFunc {
	return func(ctx context.Context, cmd *cli.Command) error {
		ctx, cancel := context.WithTimeout(ctx, cmd.Duration("timeout"))
		defer cancel()
		return action(ctx, cmd)
	}
}

// oneArg returns the single positional argument an action takes.
func oneArg(cmd *cli.Command) (string, error) {
	if cmd.Args().Len() != 1 {
		return "", usageError{fmt.Errorf("usage: %s %s", cmd.FullName(), cmd.ArgsUsage)}
	}
	return cmd.Args().First(), nil
}

// dial connects to a unix socket path or a "unix://" endpoint. flag names
// the flag (and environment variable) that chose it, for the one-line
// explanation when nothing serves there.
func dial(endpoint, flag string) (*grpc.ClientConn, error) {
	if err := checkSocket(endpoint, flag); err != nil {
		return nil, err
	}
	target := endpoint
	if !strings.Contains(target, "://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", endpoint, err)
	}
	return conn, nil
}

// socketPath is the daemon's socket: --socket, else its environment
// variables, else the default.
func socketPath(cmd *cli.Command) string {
	if s := cmd.String("socket"); s != "" {
		return s
	}
	return defaultSocket
}

// socketFlag is how the daemon's socket is chosen, for error messages.
var socketFlag = fmt.Sprintf("--socket or $%s", socketEnv)

// checkSocket tries a unix endpoint once, so that a daemon that is not
// there is explained in one line instead of by a gRPC error after the
// call's timeout. Other schemes are left to gRPC.
func checkSocket(endpoint, flag string) error {
	path := endpoint
	if scheme, rest, ok := strings.Cut(endpoint, "://"); ok {
		if scheme != "unix" {
			return nil
		}
		path = rest
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err == nil {
		c.Close()
		return nil
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no socket at %s: is warmpod running? (%s names another)", path, flag)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing serves %s (a daemon that is gone left it): is warmpod running? (%s names another)", path, flag)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("no permission to connect to %s: run as root or a member of its group (%s names another socket)", path, flag)
	}
	return fmt.Errorf("cannot connect to %s: %w (%s names another socket)", path, err, flag)
}
