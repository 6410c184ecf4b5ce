package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

func podReset(ctx context.Context, cmd *cli.Command) error {
	id, err := oneArg(cmd)
	if err != nil {
		return err
	}
	conn, err := dial(socketPath(cmd), socketFlag)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := warmpodv1.NewWarmpodClient(conn).ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: id})
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	fmt.Fprintf(w, "pod %s reset in %s\n", id, time.Duration(resp.DurationNs))
	printContainers(w, resp.Containers)
	return nil
}

func podStatus(ctx context.Context, cmd *cli.Command) error {
	id, err := oneArg(cmd)
	if err != nil {
		return err
	}
	conn, err := dial(socketPath(cmd), socketFlag)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := warmpodv1.NewWarmpodClient(conn).PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: id})
	if err != nil {
		return err
	}
	w := cmd.Root().Writer
	fmt.Fprintf(w, "pod %s\nshim pid %d, resets %d, AllContainersRestarting=%t, pre-creating=%t\n",
		resp.PodSandboxId, resp.ShimPid, resp.Resets, resp.AllContainersRestarting, resp.Precreating)
	printContainers(w, resp.Containers)
	return nil
}

// printContainers shows each container's state, its restart count and its
// last termination: where an operator sees the restarts warmpod does on its
// own (ResetPod, restart rules), which the kubelet does not count.
func printContainers(out io.Writer, cs []*warmpodv1.ContainerStatus) {
	now := time.Now()
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CONTAINER\tNAME\tSTATE\tRESTARTS\tLAST TERMINATION\tNEXT GENERATIONS")
	for _, c := range cs {
		state := strings.TrimPrefix(c.State, "CONTAINER_")
		if state == "EXITED" {
			state = fmt.Sprintf("EXITED(%d)", c.ExitCode)
		}
		last := "-"
		if t := c.LastTermination; t != nil {
			last = fmt.Sprintf("exit %d", t.ExitCode)
			if t.Reason != "" {
				last += " " + t.Reason
			}
			if t.FinishedAt > 0 {
				finished := time.Unix(0, t.FinishedAt)
				last += fmt.Sprintf(", %s ago", now.Sub(finished).Round(time.Second))
				if t.StartedAt > 0 {
					last += fmt.Sprintf(" after %s", finished.Sub(time.Unix(0, t.StartedAt)).Round(time.Millisecond))
				}
			}
		}
		next := fmt.Sprintf("%d ready", c.ReadyGenerations)
		if c.Precreating {
			next += ", making more"
		}
		fmt.Fprintf(w, "%.13s\t%s\t%s\t%d\t%s\t%s\n", c.Id, c.Name, state, c.RestartCount, last, next)
	}
	w.Flush()
}

func imageImport(ctx context.Context, cmd *cli.Command) error {
	file, err := oneArg(cmd)
	if err != nil {
		return err
	}
	path, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	conn, err := dial(socketPath(cmd), socketFlag)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := warmpodv1.NewWarmpodClient(conn).ImportImage(ctx, &warmpodv1.ImportImageRequest{Path: path})
	if err != nil {
		return err
	}
	for _, img := range resp.Images {
		fmt.Fprintln(cmd.Root().Writer, img)
	}
	return nil
}

func versions(ctx context.Context, cmd *cli.Command) error {
	fmt.Fprintf(cmd.Root().Writer, "warmpodctl %s\n", version)
	conn, err := dial(socketPath(cmd), socketFlag)
	if err != nil {
		return err
	}
	defer conn.Close()
	v, err := runtime.NewRuntimeServiceClient(conn).Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.Root().Writer, "runtime %s %s (CRI %s)\n", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
	return nil
}
