package sandbox

import (
	"os"
	"path/filepath"

	"github.com/warmpod/warmpod/runtime/oci"
)

// annotationTerminationMessagePath is the container annotation in which the
// kubelet passes the container's terminationMessagePath
// (pkg/kubelet/kuberuntime/labels.go).
const annotationTerminationMessagePath = "io.kubernetes.container.terminationMessagePath"

// kubeletTerminationMessagePath returns the container path of the kubelet's
// termination message file when cfg binds one, "" otherwise.
//
// For every container it creates, the kubelet (kuberuntime_container.go,
// makeMounts) makes an empty file <root>/pods/<pod uid>/containers/<container
// name>/<random id> and adds, last, a plain bind mount of it at the
// container's terminationMessagePath, which it also passes as the annotation
// annotationTerminationMessagePath. The request carries no flag for it, so
// a mount is taken for it only when all of that holds: the destination is
// the annotation's path, the host path is a regular file in the container's
// directory of the pod, and the mount is a plain read-write one. The shim
// then serves the container from a pre-created generation whatever the
// file's random name (runtime/shim/service, termination.go); a mount taken
// for it wrongly would still get the container's message at its exit.
func kubeletTerminationMessagePath(podUID string, cfg *ContainerConfig) string {
	p := cfg.Annotations[annotationTerminationMessagePath]
	if p == "" || podUID == "" {
		return ""
	}
	dst := filepath.Clean("/" + p)
	var m *oci.Mount
	for i := range cfg.Spec.Mounts {
		if filepath.Clean(cfg.Spec.Mounts[i].ContainerPath) == dst {
			m = &cfg.Spec.Mounts[i]
		}
	}
	if m == nil || m.Readonly || m.RecursiveReadOnly || m.Image || m.Propagation != oci.PropagationPrivate ||
		len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 || len(m.Options) > 0 {
		return ""
	}
	host := filepath.Clean(m.HostPath)
	ctrDir := filepath.Dir(host)
	podDir := filepath.Dir(filepath.Dir(ctrDir))
	if !filepath.IsAbs(host) || filepath.Base(ctrDir) != cfg.Name ||
		filepath.Base(filepath.Dir(ctrDir)) != "containers" ||
		filepath.Base(podDir) != podUID || filepath.Base(filepath.Dir(podDir)) != "pods" {
		return ""
	}
	if st, err := os.Lstat(host); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	return dst
}
