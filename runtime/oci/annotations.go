package oci

import "maps"

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
