// Package devices resolves the devices a container asks for by CDI name
// (Container Device Interface: the CRI cdi_devices field and cdi.k8s.io/*
// annotations) into OCI spec edits: device nodes, device cgroup rules,
// mounts, environment and hooks.
//
// A pod keeps its devices warm: the edits for one pod and one set of device
// names are resolved once, host device nodes included, and the same edits
// are applied to the spec of every later container of that set in the pod.
// The daemon rebuilds a container's spec on every CreateContainer (the
// kubelet's in-place restart path), so a pod's resets never read CDI specs
// again, and every generation gets the same spec — which is what lets the
// pod's shim serve it from a pre-created generation. Applying the edits
// still stats each host device node (the CDI library does on every apply),
// but the nodes were completed when first resolved, so that changes nothing.
//
// CDI spec files are read by the CDI library's cache, which watches the spec
// directories and reloads on change: a changed spec reaches new pods (and
// new device sets), never pods that already resolved theirs.
package devices

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

// Errors callers check with errors.Is.
var (
	// ErrInvalid marks errors caused by what the container asked for: a
	// malformed device name or annotation, an unknown device, a device
	// whose host node is missing. The message names it. It is of class
	// errdefs.ErrInvalidArgument.
	ErrInvalid = errdefs.ErrInvalidArgument.WithMessage("invalid device request")
	// ErrUnknownDevice means no CDI spec defines the device; such errors
	// match ErrInvalid too.
	ErrUnknownDevice = errors.New("unknown CDI device")
)

// DefaultSpecDirs are the CDI spec directories of a node, lowest priority
// first (a device in /var/run/cdi overrides one of the same name in
// /etc/cdi).
var DefaultSpecDirs = []string{"/etc/cdi", "/var/run/cdi"}

// Options configures a Resolver.
type Options struct {
	// SpecDirs are searched for CDI specs, lowest priority first (default
	// DefaultSpecDirs). Directories that do not exist yet are watched for
	// and read once they appear.
	SpecDirs []string
}

// Resolver turns CDI device names into spec edits and caches them per pod.
// It is safe for concurrent use.
type Resolver struct {
	cache *cdi.Cache

	mu sync.Mutex
	// pods maps a pod ID to its resolved device sets, keyed by setKey.
	pods map[string]map[string]*entry
	// resolutions counts resolutions done (not served from the pod cache),
	// for tests.
	resolutions int
}

// entry is one pod's resolved edits for one device set. Its mutex makes
// concurrent first uses of the same set resolve once.
type entry struct {
	mu sync.Mutex
	// edits is set once resolved; read without mu by Cached.
	edits atomic.Pointer[cdi.ContainerEdits]
}

// New loads the CDI specs of opts.SpecDirs and starts watching them. Specs
// that fail to parse are reported by the errors of the devices they would
// have defined, not here: one vendor's broken file must not keep the
// daemon from starting.
func New(opts Options) (*Resolver, error) {
	dirs := opts.SpecDirs
	if len(dirs) == 0 {
		dirs = DefaultSpecDirs
	}
	for _, d := range dirs {
		if d == "" || !strings.HasPrefix(d, "/") {
			return nil, fmt.Errorf("%w: CDI spec dir %q is not an absolute path", ErrInvalid, d)
		}
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(true))
	if err != nil {
		return nil, fmt.Errorf("load CDI specs: %w", err)
	}
	return &Resolver{cache: cache, pods: map[string]map[string]*entry{}}, nil
}

// Close stops watching the spec directories.
func (r *Resolver) Close() error {
	// Turning auto-refresh off is the library's way to drop its watcher.
	return r.cache.Configure(cdi.WithAutoRefresh(false))
}

// Requested collects the CDI devices a container asks for: the names of the
// CRI cdi_devices field first, then those of cdi.k8s.io/* annotations of
// each map in turn, each in key order. Pass only maps the kubelet writes
// (a container's annotations), never a pod's: any pod author writes those. Duplicates are dropped. The order is deterministic, so the
// same request always gives the same spec.
func Requested(names []string, annotations ...map[string]string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for i, n := range names {
		if _, _, _, err := parser.ParseQualifiedName(n); err != nil {
			return nil, fmt.Errorf("%w: cdi_devices[%d]: CDI device name %q: %w", ErrInvalid, i, n, err)
		}
		add(n)
	}
	for _, ann := range annotations {
		for _, k := range AnnotationKeys(ann) {
			// One key at a time keeps the order of the value's list.
			// ParseAnnotations rejects any name that is not qualified.
			_, devs, err := cdi.ParseAnnotations(map[string]string{k: ann[k]})
			if err != nil {
				return nil, fmt.Errorf("%w: annotation %s: %w", ErrInvalid, k, err)
			}
			for _, n := range devs {
				add(n)
			}
		}
	}
	return out, nil
}

// AnnotationKeys lists the keys of ann that name CDI devices
// (cdi.k8s.io/*), sorted.
func AnnotationKeys(ann map[string]string) []string {
	var keys []string
	for k := range ann {
		if strings.HasPrefix(k, cdi.AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// setKey identifies a device set; order matters, since later edits win.
func setKey(names []string) string { return strings.Join(names, "\x00") }

// Inject applies the edits of the named devices to spec, resolving them
// the first time pod podID asks for this set and reusing them after. An
// unknown device or a missing host device node fails with an error
// matching ErrInvalid that names it. On error spec may be partly edited:
// callers discard it.
func (r *Resolver) Inject(podID string, names []string, spec *specs.Spec) error {
	if len(names) == 0 {
		return nil
	}
	if spec == nil {
		return errors.New("inject CDI devices: nil spec")
	}
	e, err := r.edits(podID, names)
	if err != nil {
		return err
	}
	// The library's Apply completes the device nodes it is given in place;
	// a copy keeps concurrent injections of one cached entry apart.
	if err := copyEdits(e).Apply(spec); err != nil {
		return fmt.Errorf("inject CDI devices %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// edits returns the cached edits of pod podID for names, resolving them if
// this is the first request of the set.
func (r *Resolver) edits(podID string, names []string) (*cdi.ContainerEdits, error) {
	key := setKey(names)
	r.mu.Lock()
	sets := r.pods[podID]
	if sets == nil {
		sets = map[string]*entry{}
		r.pods[podID] = sets
	}
	e := sets[key]
	if e == nil {
		e = &entry{}
		sets[key] = e
	}
	r.mu.Unlock()

	if edits := e.edits.Load(); edits != nil {
		return edits, nil
	}
	// Lock order: an entry's mu before r.mu.
	e.mu.Lock()
	defer e.mu.Unlock()
	if edits := e.edits.Load(); edits != nil {
		return edits, nil
	}
	edits, err := r.resolve(names)
	if err != nil {
		// Not cached: a device may be installed, or its node appear,
		// before the next try.
		r.mu.Lock()
		if r.pods[podID][key] == e {
			delete(r.pods[podID], key)
			if len(r.pods[podID]) == 0 {
				delete(r.pods, podID)
			}
		}
		r.mu.Unlock()
		return nil, err
	}
	e.edits.Store(edits)
	r.mu.Lock()
	r.resolutions++
	r.mu.Unlock()
	return edits, nil
}

// resolve looks the devices up and merges their edits, each spec's common
// edits once, in the order the CDI library itself uses. Every device node
// is checked and completed from the host (type, major/minor, mode) now, so
// later injections need no lookups.
func (r *Resolver) resolve(names []string) (*cdi.ContainerEdits, error) {
	merged := &cdi.ContainerEdits{ContainerEdits: &cdispec.ContainerEdits{}}
	seenSpec := map[*cdi.Spec]bool{}
	for _, name := range names {
		dev := r.lookup(name)
		if dev == nil {
			return nil, r.unknown(name)
		}
		own := &cdi.ContainerEdits{ContainerEdits: &cdispec.ContainerEdits{}}
		if s := dev.GetSpec(); !seenSpec[s] {
			seenSpec[s] = true
			own.Append(&cdi.ContainerEdits{ContainerEdits: &s.ContainerEdits})
		}
		own.Append(&cdi.ContainerEdits{ContainerEdits: &dev.ContainerEdits})
		own = copyEdits(own)
		// A trial run on a scratch spec validates the edits and fills each
		// node in place from the host, failing on a missing host node.
		scratch := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
		if err := own.Apply(scratch); err != nil {
			return nil, fmt.Errorf("%w: CDI device %q (spec %s): %w", ErrInvalid, name, dev.GetSpec().GetPath(), err)
		}
		merged.Append(own)
	}
	return merged, nil
}

// lookup finds a device in the cache. A miss forces a rescan first: a
// device plugin may have written the spec a moment ago, before the
// directory watch caught up.
func (r *Resolver) lookup(name string) *cdi.Device {
	if dev := r.cache.GetDevice(name); dev != nil {
		return dev
	}
	// Reconfiguring with the same options rescans the directories now.
	_ = r.cache.Configure(cdi.WithAutoRefresh(true))
	return r.cache.GetDevice(name)
}

// unknown builds the error for a device no spec defines, naming the spec
// files that failed to load: the device is most likely in one of them.
func (r *Resolver) unknown(name string) error {
	var broken []string
	for path, errs := range r.cache.GetErrors() {
		if len(errs) > 0 {
			broken = append(broken, fmt.Sprintf("%s: %v", path, errors.Join(errs...)))
		}
	}
	sort.Strings(broken)
	msg := fmt.Sprintf("%q is defined by no CDI spec in %s", name, strings.Join(r.cache.GetSpecDirectories(), ", "))
	if len(broken) > 0 {
		msg += "; specs that failed to load: " + strings.Join(broken, "; ")
	}
	return fmt.Errorf("%w: %w: %s", ErrInvalid, ErrUnknownDevice, msg)
}

// copyEdits copies the parts of e that Apply writes to (the device nodes),
// sharing the rest, which Apply only reads.
func copyEdits(e *cdi.ContainerEdits) *cdi.ContainerEdits {
	if e == nil || e.ContainerEdits == nil {
		return &cdi.ContainerEdits{ContainerEdits: &cdispec.ContainerEdits{}}
	}
	raw := *e.ContainerEdits
	raw.DeviceNodes = make([]*cdispec.DeviceNode, len(e.DeviceNodes))
	for i, d := range e.DeviceNodes {
		n := *d
		raw.DeviceNodes[i] = &n
	}
	return &cdi.ContainerEdits{ContainerEdits: &raw}
}

// Forget drops the cached edits of pod podID (when the pod is removed).
func (r *Resolver) Forget(podID string) {
	r.mu.Lock()
	delete(r.pods, podID)
	r.mu.Unlock()
}

// Cached reports how many device sets of pod podID have resolved edits.
func (r *Resolver) Cached(podID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.pods[podID] {
		if e.edits.Load() != nil {
			n++
		}
	}
	return n
}
