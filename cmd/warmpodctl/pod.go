package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

func podReset(ctx context.Context, socket string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: warmpodctl pod reset POD_ID")
	}
	conn, err := dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := warmpodv1.NewWarmpodClient(conn).ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: args[0]})
	if err != nil {
		return err
	}
	fmt.Printf("pod %s reset in %s\n", args[0], time.Duration(resp.DurationNs))
	printContainers(resp.Containers)
	return nil
}

func podStatus(ctx context.Context, socket string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: warmpodctl pod status POD_ID")
	}
	conn, err := dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := warmpodv1.NewWarmpodClient(conn).PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: args[0]})
	if err != nil {
		return err
	}
	fmt.Printf("pod %s\nshim pid %d, resets %d, AllContainersRestarting=%t\n",
		resp.PodSandboxId, resp.ShimPid, resp.Resets, resp.AllContainersRestarting)
	printContainers(resp.Containers)
	return nil
}

func printContainers(cs []*warmpodv1.ContainerStatus) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CONTAINER\tNAME\tSTATE\tRESTARTS\tLAST EXIT\tWARM")
	for _, c := range cs {
		last := "-"
		if t := c.LastTermination; t != nil {
			last = fmt.Sprintf("%d (%s)", t.ExitCode, t.Reason)
		}
		fmt.Fprintf(w, "%.13s\t%s\t%s\t%d\t%s\t%t\n", c.Id, c.Name, c.State, c.RestartCount, last, c.Warm)
	}
	w.Flush()
}

func imageImport(ctx context.Context, socket string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: warmpodctl image import FILE")
	}
	path, err := filepath.Abs(args[0])
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	conn, err := dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := warmpodv1.NewWarmpodClient(conn).ImportImage(ctx, &warmpodv1.ImportImageRequest{Path: path})
	if err != nil {
		return err
	}
	for _, img := range resp.Images {
		fmt.Println(img)
	}
	return nil
}

func version(ctx context.Context, socket string) error {
	conn, err := dial(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	v, err := runtime.NewRuntimeServiceClient(conn).Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		return err
	}
	fmt.Printf("runtime %s %s (CRI %s)\n", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
	return nil
}
