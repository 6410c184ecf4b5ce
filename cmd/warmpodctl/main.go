// Command warmpodctl is warmpod's command-line client: pod resets, pod
// status, image import, and the reset benchmark (which works against any
// CRI runtime).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const defaultSocket = "/run/warmpod/warmpod.sock"

const usage = `usage: warmpodctl [--socket PATH] [--timeout DURATION] COMMAND

commands:
  pod reset POD_ID      restart every container of a pod in place; returns once its main containers run
  pod status POD_ID     show a pod's reset condition, restart counts and warm generations
  image import FILE     load an OCI layout or docker-archive tarball
  bench reset [flags]   measure pod reset latency (run "warmpodctl bench reset -h")
  version               show the client and daemon versions
`

func main() {
	fs := flag.NewFlagSet("warmpodctl", flag.ContinueOnError)
	socket := fs.String("socket", envOr("WARMPOD_SOCKET", defaultSocket), "warmpod socket (or $WARMPOD_SOCKET)")
	timeout := fs.Duration("timeout", 2*time.Minute, "timeout of a single command")
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	args := fs.Args()
	if len(args) == 0 {
		fs.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var err error
	switch {
	case len(args) >= 2 && args[0] == "pod" && args[1] == "reset":
		err = podReset(ctx, *socket, args[2:])
	case len(args) >= 2 && args[0] == "pod" && args[1] == "status":
		err = podStatus(ctx, *socket, args[2:])
	case len(args) >= 2 && args[0] == "image" && args[1] == "import":
		err = imageImport(ctx, *socket, args[2:])
	case len(args) >= 2 && args[0] == "bench" && args[1] == "reset":
		// A benchmark sets its own duration.
		err = benchReset(context.Background(), *socket, args[2:])
	case args[0] == "version":
		err = version(ctx, *socket)
	default:
		fs.Usage()
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "warmpodctl:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// dial connects to a unix socket path or a "unix://" endpoint.
func dial(endpoint string) (*grpc.ClientConn, error) {
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
