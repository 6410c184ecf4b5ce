package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/integration/launch"
)

// newDaemon lays out the run's daemon under dir with places of its own (launch.Private: bridge wpcrit<hex>,
// chains WPCRIT<HEX>-*, cgroup parent /warmpod-crit-<hex>), configured through its configuration file alone,
// as an operator runs it. It mirrors each of hosts to registryAddr (plain HTTP on loopback).
func newDaemon(bin, dir, registryAddr string, hosts []string) (*launch.Daemon, error) {
	cfg, err := launch.Private(bin, dir, "crit")
	if err != nil {
		return nil, err
	}
	cfg.AllInFile = true
	cfg.Mirrors = map[string][]string{}
	for _, h := range hosts {
		cfg.Mirrors[h] = []string{"http://" + registryAddr}
	}
	return &launch.Daemon{Config: cfg}, nil
}

// removePods removes every container and pod the daemon lists, returning how many pods it removed.
func removePods(d *launch.Daemon) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	ctrs, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs.Containers {
		if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.Id, err))
		}
	}
	pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("list pods: %w", err)
	}
	for _, p := range pods.Items {
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod %s: %w", p.Id, err))
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", p.Id, err))
		}
	}
	return len(pods.Items), errors.Join(errs...)
}
