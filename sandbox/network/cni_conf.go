package network

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"k8s.io/apimachinery/pkg/api/resource"
)

// ErrCNIConfig means the CNI configuration cannot be used: none is
// installed, the first one does not parse, or a plugin it names is
// missing. The message names the file. It is of class
// errdefs.ErrFailedPrecondition: the node, not the request, is at fault.
var ErrCNIConfig = errdefs.ErrFailedPrecondition.WithMessage("unusable CNI configuration")

// Pod annotations with the pod's traffic limits, as the kubelet's
// runtimes read them (Kubernetes quantities in bits per second).
const (
	AnnotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	AnnotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

// Bandwidth limits accepted from the annotations, as the kubelet checks
// them.
var (
	minBandwidth = resource.MustParse("1k")
	maxBandwidth = resource.MustParse("1P")
)

// cniConfExtensions are the files a CNI conf dir may hold; like the
// kubelet's runtimes, the first by name wins.
var cniConfExtensions = []string{".conf", ".conflist", ".json"}

// loadCNIConf reads the network configuration of dir: the first file by
// name, a .conflist as a list and a single .conf or .json plugin made into
// a list of one. Errors match ErrCNIConfig and name the file.
func loadCNIConf(dir string) (file string, _ *libcni.NetworkConfigList, _ error) {
	files, err := libcni.ConfFiles(dir, cniConfExtensions)
	if err != nil {
		return "", nil, fmt.Errorf("%w: read CNI conf dir %s: %w", ErrCNIConfig, dir, err)
	}
	if len(files) == 0 {
		return "", nil, fmt.Errorf("%w: no network configuration (%s) in %s", ErrCNIConfig, strings.Join(cniConfExtensions, ", "), dir)
	}
	sort.Strings(files)
	file = files[0]
	var list *libcni.NetworkConfigList
	if filepath.Ext(file) == ".conflist" {
		list, err = libcni.NetworkConfFromFile(file)
	} else {
		var single *libcni.PluginConfig
		// Deprecated in libcni, but single-plugin files are still what many
		// nodes install.
		if single, err = libcni.ConfFromFile(file); err == nil { //nolint:staticcheck // see above
			list, err = libcni.ConfListFromConf(single) //nolint:staticcheck // see above
		}
	}
	if err != nil {
		return file, nil, fmt.Errorf("%w: %s: %w", ErrCNIConfig, file, err)
	}
	if list.Name == "" {
		return file, nil, fmt.Errorf("%w: %s: network has no name", ErrCNIConfig, file)
	}
	if len(list.Plugins) == 0 {
		return file, nil, fmt.Errorf("%w: %s: network %q lists no plugins", ErrCNIConfig, file, list.Name)
	}
	return file, list, nil
}

// cniPortMapping is the portMappings capability's entry.
type cniPortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// cniBandwidth is the bandwidth capability: rates in bits per second,
// bursts in bits.
type cniBandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// cniIPRange is one range of the ipRanges capability.
type cniIPRange struct {
	Subnet string `json:"subnet"`
}

// cniPorts converts mappings to the portMappings capability; only
// mappings with a host port are exposed.
func cniPorts(in []PortMapping) ([]cniPortMapping, error) {
	var out []cniPortMapping
	for _, pm := range in {
		proto, err := normalizeProtocol(pm.Protocol)
		if err != nil {
			return nil, err
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return nil, fmt.Errorf("%w: port mapping %d->%d out of range", ErrInvalid, pm.HostPort, pm.ContainerPort)
		}
		if pm.HostPort == 0 {
			continue
		}
		hostIP := pm.HostIP
		if hostIP != "" {
			if _, err := netip.ParseAddr(hostIP); err != nil {
				return nil, fmt.Errorf("%w: host IP %q of port %d is not an IP address", ErrInvalid, pm.HostIP, pm.HostPort)
			}
		}
		out = append(out, cniPortMapping{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: proto, HostIP: hostIP})
	}
	return out, nil
}

// bandwidthOf reads the pod's bandwidth annotations; nil when it has none.
// The burst is unbounded (the largest the plugin takes), as with the
// kubelet's other runtimes: the annotations only give a rate.
func bandwidthOf(annotations map[string]string) (*cniBandwidth, error) {
	rate := func(key string) (uint64, error) {
		v, ok := annotations[key]
		if !ok {
			return 0, nil
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return 0, fmt.Errorf("%w: annotation %s: %q is not a quantity: %w", ErrInvalid, key, v, err)
		}
		if q.Cmp(minBandwidth) < 0 || q.Cmp(maxBandwidth) > 0 {
			return 0, fmt.Errorf("%w: annotation %s: %s is outside %s-%s", ErrInvalid, key, v, minBandwidth.String(), maxBandwidth.String())
		}
		return uint64(q.Value()), nil
	}
	in, err := rate(AnnotationIngressBandwidth)
	if err != nil {
		return nil, err
	}
	eg, err := rate(AnnotationEgressBandwidth)
	if err != nil {
		return nil, err
	}
	if in == 0 && eg == 0 {
		return nil, nil
	}
	bw := &cniBandwidth{IngressRate: in, EgressRate: eg}
	if in > 0 {
		bw.IngressBurst = math.MaxUint32
	}
	if eg > 0 {
		bw.EgressBurst = math.MaxUint32
	}
	return bw, nil
}

// parsePodCIDRs reads a pod CIDR as UpdateRuntimeConfig gives it: one
// CIDR, or two comma separated for dual stack.
func parsePodCIDRs(s string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("%w: pod CIDR %q is not a CIDR", ErrInvalid, c)
		}
		out = append(out, p.Masked().String())
	}
	return out, nil
}

// cniArgs are the CNI_ARGS of a pod, as the kubelet's runtimes pass them.
func cniArgs(pod Pod) [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", pod.Namespace},
		{"K8S_POD_NAME", pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", pod.ID},
		{"K8S_POD_UID", pod.UID},
	}
}

// cniResult converts a plugin chain's result: the addresses of the pod's
// interface (all addresses when the result ties none to an interface),
// primary first, the first address's gateway, and the routes.
func cniResult(r types.Result, ifName string) (Result, error) {
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return Result{}, fmt.Errorf("convert CNI result: %w", err)
	}
	podIf := -1
	for i, iface := range res.Interfaces {
		if iface != nil && iface.Name == ifName && iface.Sandbox != "" {
			podIf = i
			break
		}
	}
	out := Result{Interface: ifName}
	for _, ip := range res.IPs {
		if ip == nil {
			continue
		}
		if podIf >= 0 && ip.Interface != nil && *ip.Interface != podIf {
			continue
		}
		out.IPs = append(out.IPs, ip.Address.IP)
		if out.Gateway == nil && ip.Gateway != nil {
			out.Gateway = ip.Gateway
		}
	}
	if len(out.IPs) == 0 {
		return Result{}, fmt.Errorf("CNI result gives interface %s no IP address", ifName)
	}
	for _, rt := range res.Routes {
		if rt == nil {
			continue
		}
		out.Routes = append(out.Routes, Route{Dst: rt.Dst, GW: rt.GW})
	}
	return out, nil
}

// netnsIfExists returns path, or "" once the namespace is gone: plugins
// then release what they hold without entering it.
func netnsIfExists(path string) string {
	if path == "" {
		return ""
	}
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}
