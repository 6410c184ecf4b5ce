package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/sandbox"
)

// PodSandboxStatus reports a pod's state, network and namespaces.
func (s *Service) PodSandboxStatus(ctx context.Context, r *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	info, err := s.m.PodStatus(ctx, r.PodSandboxId, r.Verbose)
	if err != nil {
		return nil, err
	}
	return sandboxStatusResponse(&info, r.Verbose), nil
}

// sandboxStatusResponse is the PodSandboxStatus answer for a pod. It leaves
// the response's timestamp and container statuses unset, as containerd
// does: a kubelet with the EventedPLEG gate (v1.37) takes a non-zero
// timestamp as the sign to read the pod's containers from this response,
// and on that path it never fills its list of the sandbox's active
// containers, so a pod with init containers never counts as initialized
// and its first init container is created again on every sync (issue 9).
// With the timestamp unset the kubelet lists the containers itself.
func sandboxStatusResponse(info *sandbox.PodInfo, verbose bool) *runtime.PodSandboxStatusResponse {
	resp := &runtime.PodSandboxStatusResponse{Status: podStatus(info)}
	if verbose {
		resp.Info = verboseInfo("info", map[string]any{
			"pid":                     info.ShimPid,
			"netNamespacePath":        info.NetNSPath,
			"cgroupPath":              info.CgroupPath,
			"allContainersRestarting": info.Restarting,
			"resets":                  info.Resets,
			"config":                  info.Config,
		})
	}
	return resp
}

func podState(st sandbox.PodState) runtime.PodSandboxState {
	if st == sandbox.PodReady {
		return runtime.PodSandboxState_SANDBOX_READY
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY
}

func podMetadata(c *sandbox.PodConfig) *runtime.PodSandboxMetadata {
	return &runtime.PodSandboxMetadata{Name: c.Name, Namespace: c.Namespace, Uid: c.UID, Attempt: c.Attempt}
}

func podStatus(i *sandbox.PodInfo) *runtime.PodSandboxStatus {
	st := &runtime.PodSandboxStatus{
		Id:             i.ID,
		Metadata:       podMetadata(&i.Config),
		State:          podState(i.State),
		CreatedAt:      i.CreatedAt,
		Network:        &runtime.PodSandboxNetworkStatus{},
		Labels:         copyMap(i.Config.Labels),
		Annotations:    copyMap(i.Config.Annotations),
		RuntimeHandler: i.Config.RuntimeHandler,
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: &runtime.NamespaceOption{
			Network:  criMode(i.Config.Namespaces.Network),
			Pid:      criMode(i.Config.Namespaces.PID),
			Ipc:      criMode(i.Config.Namespaces.IPC),
			TargetId: i.Config.Namespaces.TargetID,
		}}},
	}
	if len(i.IPs) > 0 {
		st.Network.Ip = i.IPs[0]
		for _, ip := range i.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	}
	return st
}

func criMode(m oci.NamespaceMode) runtime.NamespaceMode {
	switch m {
	case oci.NamespaceContainer:
		return runtime.NamespaceMode_CONTAINER
	case oci.NamespaceNode:
		return runtime.NamespaceMode_NODE
	case oci.NamespaceTarget:
		return runtime.NamespaceMode_TARGET
	}
	return runtime.NamespaceMode_POD
}
