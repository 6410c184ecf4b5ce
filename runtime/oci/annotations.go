package oci

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// OCI annotation keys the CRI runtimes share (containerd's CRI plugin sets them; Kata and other VM
// runtimes read them to tell sandbox from container and to find the pod).
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"

	// ContainerTypeContainer is the AnnotationContainerType value of every spec built here: warmpod runs
	// no sandbox container.
	ContainerTypeContainer = "container"
)

// buildAnnotations copies the CRI annotations and sets the CRI runtime keys over them, so a workload
// cannot pose as another pod.
func buildAnnotations(c *Container, img *Image, pod *Pod) map[string]string {
	out := make(map[string]string, len(c.Annotations)+7)
	maps.Copy(out, c.Annotations)
	out[AnnotationContainerType] = ContainerTypeContainer
	out[AnnotationContainerName] = c.Name
	out[AnnotationImageName] = img.Name
	out[AnnotationSandboxID] = pod.ID
	out[AnnotationSandboxName] = pod.Name
	out[AnnotationSandboxNamespace] = pod.Namespace
	out[AnnotationSandboxUID] = pod.UID
	return out
}

// ShapeKey digests everything in s that shapes the container's process: two specs with the same key run
// the same process in the same environment, so a pre-created generation built from one can serve a
// CreateContainer that built the other. It ignores Annotations (the kubelet bumps the restart count
// there on every attempt), Root.Path and Linux.CgroupsPath (they name the generation, not its shape).
// The image is not part of a spec: callers compare image ids beside the key.
func ShapeKey(s *specs.Spec) (string, error) {
	if s == nil {
		return "", fmt.Errorf("shape key of a nil spec")
	}
	shape := *s
	shape.Annotations = nil
	if s.Root != nil {
		root := *s.Root
		root.Path = ""
		shape.Root = &root
	}
	if s.Linux != nil {
		linux := *s.Linux
		linux.CgroupsPath = ""
		shape.Linux = &linux
	}
	// encoding/json writes struct fields in a fixed order and map keys sorted, so equal specs encode
	// equally.
	b, err := json.Marshal(&shape)
	if err != nil {
		return "", fmt.Errorf("encode spec: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
