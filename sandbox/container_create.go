package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/devices"
	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/shim"
)

func nowNanos() int64 { return time.Now().UnixNano() }

// hostOOMScoreAdjRange is read once: it depends on the daemon's own
// oom_score_adj and capabilities, which do not change while it runs.
var hostOOMScoreAdjRange = sync.OnceValues(func() (int, int) { return oci.HostOOMScoreAdjRange() })

// CreateContainer creates a container in pod podID and returns its id. When
// the pod's shim holds a pre-created generation of a container with the same
// name and process shape, the container is served from it. A retry for a
// container that already exists (same pod, name and attempt) returns its id;
// one that comes while the first request is still creating it waits for
// that request's result.
func (m *Manager) CreateContainer(ctx context.Context, podID string, cfg ContainerConfig) (string, error) {
	p, err := m.getPod(podID)
	if err != nil {
		return "", err
	}
	client, err := p.client()
	if err != nil {
		return "", err
	}
	if cfg.Name == "" {
		return "", fmt.Errorf("container metadata needs a name: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.Image == "" {
		return "", fmt.Errorf("container %q: image is required: %w", cfg.Name, errdefs.ErrInvalidArgument)
	}
	// The log file is opened as root: its path may not leave the pod's log
	// directory ("..", absolute, or NUL in it).
	if cfg.LogPath != "" && (!filepath.IsLocal(cfg.LogPath) || strings.ContainsRune(cfg.LogPath, 0)) {
		return "", fmt.Errorf("container %q: log_path %q must be a path below the pod's log directory: %w", cfg.Name, cfg.LogPath, errdefs.ErrInvalidArgument)
	}
	id := newID()
	key := ctrKey(p.meta.ID, &cfg)
	existing, settle, err := m.claimContainerName(ctx, key, cfg.Name, id)
	if err != nil || existing != "" {
		return existing, err
	}
	// Deferred before the rollback, so it runs after it: a retry waiting
	// for this request looks again once everything is rolled back.
	defer settle()
	var undo cleanups
	defer undo.run(ctx)
	undo.add(func(context.Context) { m.ctrNames.release(key) })

	img, err := m.opts.Images.Get(cfg.Image)
	if err != nil {
		return "", fmt.Errorf("image %q of container %q: %w", cfg.Image, cfg.Name, err)
	}
	release, err := m.opts.Images.Retain(img.ID)
	if err != nil {
		return "", fmt.Errorf("hold image %s: %w", img.ID, err)
	}
	undo.add(func(context.Context) { release() })

	sigName, sigSource := img.Config.StopSignal, "image "+cfg.Image
	if cfg.StopSignal != "" {
		sigName, sigSource = cfg.StopSignal, "container "+cfg.Name
	}
	stopSignal, err := parseSignal(sigName)
	if err != nil {
		return "", fmt.Errorf("%s: %w: %w", sigSource, err, errdefs.ErrInvalidArgument)
	}
	// Image volumes are resolved to their read-only views for the spec; the
	// metadata keeps the image references, with the images' ids.
	specCfg := cfg
	var releaseVols func()
	specCfg.Spec.Mounts, cfg.Spec.Mounts, releaseVols, err = m.vols.resolve(p.meta.ID, cfg.Spec.Mounts)
	if err != nil {
		return "", fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	undo.add(func(context.Context) { releaseVols() })
	spec, err := m.buildSpec(p, id, &specCfg, &img)
	if err != nil {
		return "", err
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	logPath := ""
	if p.meta.Config.LogDirectory != "" && cfg.LogPath != "" {
		logPath = filepath.Join(p.meta.Config.LogDirectory, cfg.LogPath)
	}
	meta := containerMeta{
		ID:        id,
		PodID:     p.meta.ID,
		Config:    cfg,
		ImageID:   img.ID,
		ImageName: imageName(cfg.Image, &img),
		CreatedAt: nowNanos(),
		LogPath:   logPath,
	}
	if spec.Process != nil {
		u := spec.Process.User
		meta.User = &u
	}
	if err := m.meta.put("containers", id, &containerEntry{containerMeta: meta}); err != nil {
		return "", err
	}
	undo.add(func(context.Context) { _ = m.meta.delete("containers", id) })

	c := &container{meta: meta, releaseImage: both(release, releaseVols)}
	c.status.Record = shim.Record{ID: id, Name: cfg.Name, State: shim.StateUnknown, CreatedAt: meta.CreatedAt, LogPath: logPath}
	c.status.Creating = true
	// Indexed before the shim call so that its created event finds it.
	m.mu.Lock()
	m.ctrs[id] = c
	m.mu.Unlock()
	undo.add(func(context.Context) {
		m.mu.Lock()
		delete(m.ctrs, id)
		m.mu.Unlock()
	})

	resp, err := client.CreateContainer(ctx, &shimv1.CreateContainerRequest{
		Id:         id,
		Name:       cfg.Name,
		Attempt:    cfg.Attempt,
		Spec:       specJSON,
		Layers:     img.Layers,
		LogPath:    logPath,
		Tty:        cfg.Tty,
		Stdin:      cfg.Stdin,
		StdinOnce:  cfg.StdinOnce,
		StopSignal: int32(stopSignal),

		TerminationMessagePath: kubeletTerminationMessagePath(p.meta.Config.UID, &specCfg),
	})
	if err != nil {
		return "", fmt.Errorf("create container %q in pod %s: %w", cfg.Name, p.meta.ID, err)
	}
	m.setRecord(c, shim.FromProto(resp.State))
	undo.release()
	log.G(ctx).WithField("pod", p.meta.ID).WithField("container", id).
		WithField("warm", resp.Warm).Infof("container %q created", cfg.Name)
	return id, nil
}

// claimContainerName reserves key for the new container id. When a
// container of that key exists, it returns its id instead: a retry of a
// finished create gets the first result. When one is being created, it
// waits for that request to end and looks again, so a retry never answers
// with a container that may yet be rolled back; after a rollback it
// reserves the name and the retry creates the container anew. The caller
// calls settle when its request ends.
func (m *Manager) claimContainerName(ctx context.Context, key, name, id string) (existing string, settle func(), err error) {
	for {
		settle, busy, err := m.ctrNames.create(key, id)
		if err == nil {
			return "", settle, nil
		}
		if busy == nil {
			if c := m.containerByKey(key); c != nil {
				return c.meta.ID, nil, nil
			}
			return "", nil, fmt.Errorf("container %q: %w", name, err)
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return "", nil, fmt.Errorf("container %q is being created by an earlier request: %w", name, ctx.Err())
		}
	}
}

func (m *Manager) containerByKey(key string) *container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, c := range m.ctrs {
		if ctrKey(c.meta.PodID, &c.meta.Config) == key {
			return c
		}
	}
	return nil
}

// buildSpec builds the OCI spec of container id from its config, its image
// and its pod.
func (m *Manager) buildSpec(p *pod, id string, cfg *ContainerConfig, img *image.Image) (*specs.Spec, error) {
	oc := cfg.Spec
	oc.ID = id
	oc.Name = cfg.Name
	oc.Tty = cfg.Tty
	oc.Stdin = cfg.Stdin
	oc.Labels = cfg.Labels
	oc.Annotations = cfg.Annotations
	pc := &p.meta.Config
	minAdj, maxAdj := hostOOMScoreAdjRange()
	op := &oci.Pod{
		ID:             p.meta.ID,
		Name:           pc.Name,
		Namespace:      pc.Namespace,
		UID:            pc.UID,
		Hostname:       pc.Hostname,
		NetNS:          p.meta.NS.Net,
		IPCNS:          p.meta.NS.IPC,
		UTSNS:          p.meta.NS.UTS,
		UserNS:         p.meta.NS.User,
		PIDNS:          p.meta.PIDNS,
		CgroupParent:   p.meta.CgroupPath,
		ResolvConf:     p.meta.ResolvConf,
		Hosts:          p.meta.Hosts,
		HostnameFile:   p.meta.Hostname,
		Shm:            p.meta.Shm,
		Sysctls:        pc.Sysctls,
		Privileged:     pc.Privileged,
		OOMScoreAdjMin: minAdj,
		OOMScoreAdjMax: maxAdj,
	}
	if pc.HostNetwork() {
		op.Hostname = ""
	}
	// A container that shares the pod's namespace of a kind shares the
	// node's when the pod uses the node's.
	ns := &oc.Security.Namespaces
	if ns.Network == oci.NamespacePod && pc.Namespaces.Network == oci.NamespaceNode {
		ns.Network = oci.NamespaceNode
	}
	if ns.IPC == oci.NamespacePod && pc.Namespaces.IPC == oci.NamespaceNode {
		ns.IPC = oci.NamespaceNode
	}
	if ns.PID == oci.NamespacePod && pc.Namespaces.PID == oci.NamespaceNode {
		ns.PID = oci.NamespaceNode
	}
	if ns.PID == oci.NamespacePod && p.meta.PIDNS == "" {
		// The pod has no shared pid namespace to join.
		ns.PID = oci.NamespaceContainer
	}
	if err := containerUserNS(ns, p); err != nil {
		return nil, fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	if oc.Security.Namespaces.PID == oci.NamespaceTarget {
		target, err := m.getContainer(oc.Security.Namespaces.TargetID)
		if err != nil {
			return nil, fmt.Errorf("target of container %q's pid namespace: %w", cfg.Name, err)
		}
		// A container may only join a pid namespace of its own pod: another
		// pod's processes are not its to see or signal.
		if target.meta.PodID != p.meta.ID {
			return nil, fmt.Errorf("container %q: namespace_options.target_id %q names a container of another pod: %w",
				cfg.Name, oc.Security.Namespaces.TargetID, errdefs.ErrInvalidArgument)
		}
		st := target.Status().Record
		if st.State != shim.StateRunning || st.Pid == 0 {
			return nil, fmt.Errorf("target container %s of container %q's pid namespace is not running: %w", target.meta.ID, cfg.Name, errdefs.ErrFailedPrecondition)
		}
		// The shim resolves it for every generation: the target's pid
		// changes with each of its own.
		op.TargetPIDNS = shim.TargetPIDNamespace(target.meta.ID)
	}
	oimg := &oci.Image{
		Name:       cfg.Image,
		User:       img.Config.User,
		WorkingDir: img.Config.WorkingDir,
		Entrypoint: img.Config.Entrypoint,
		Cmd:        img.Config.Cmd,
		Env:        img.Config.Env,
		Layers:     img.Layers,
	}
	spec, err := oci.Build(&oc, oimg, op)
	if err != nil {
		return nil, err
	}
	if err := m.injectDevices(p, cfg, spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// containerUserNS makes a container's user namespace the pod's: the
// kubelet copies the pod's options into each container's, and a container
// that asks for none in a pod that has one joins it too. The other pod
// namespaces belong to the pod's user namespace, so a container may not
// stay outside it, nor have one of its own.
func containerUserNS(ns *oci.NamespaceOptions, p *pod) error {
	podHas := p.meta.NS.User != ""
	u := ns.UserNS
	switch {
	case u == nil && podHas:
		ns.UserNS = &oci.UserNamespace{Mode: oci.NamespacePod}
	case u == nil, u.Mode == oci.NamespaceNode && !podHas:
	case u.Mode == oci.NamespacePod && podHas:
		if pu := p.meta.Config.Namespaces.UserNS; (len(u.UIDs) > 0 || len(u.GIDs) > 0) &&
			(!slices.Equal(u.UIDs, pu.UIDs) || !slices.Equal(u.GIDs, pu.GIDs)) {
			return fmt.Errorf("user namespace mappings (uids %v, gids %v) differ from the pod's (uids %v, gids %v): %w",
				u.UIDs, u.GIDs, pu.UIDs, pu.GIDs, errdefs.ErrInvalidArgument)
		}
	case u.Mode == oci.NamespacePod:
		return fmt.Errorf("user namespace mode is POD but the pod has no user namespace: %w", errdefs.ErrInvalidArgument)
	case u.Mode == oci.NamespaceNode:
		return fmt.Errorf("user namespace mode is NODE but the pod has a user namespace of its own: %w", errdefs.ErrInvalidArgument)
	default:
		return fmt.Errorf("user namespace mode %s is not supported: only POD and NODE are: %w", nsModeName(u.Mode), errdefs.ErrInvalidArgument)
	}
	return nil
}

// injectDevices adds the CDI devices the container asks for (the CRI
// field, then cdi.k8s.io/* annotations of the container). Their edits are
// resolved once per pod and device set, so every generation of the
// container gets the same spec.
func (m *Manager) injectDevices(p *pod, cfg *ContainerConfig, spec *specs.Spec) error {
	names, ignored, err := requestedDevices(cfg, p.meta.Config.Annotations)
	if len(ignored) > 0 {
		m.log.WithFields(log.Fields{"pod": p.meta.ID, "container": cfg.Name, "annotations": ignored}).
			Debug("CDI device annotations of the pod are ignored: only the kubelet requests devices")
	}
	if err != nil {
		return fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	if len(names) == 0 {
		return nil
	}
	if m.opts.Devices == nil {
		return fmt.Errorf("container %q asks for CDI devices %v, but CDI is not configured: %w", cfg.Name, names, errdefs.ErrFailedPrecondition)
	}
	if err := m.opts.Devices.Inject(p.meta.ID, names, spec); err != nil {
		return fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	return nil
}

// requestedDevices lists the CDI devices a container requests: those of the
// CRI cdi_devices field and of the container's cdi.k8s.io/* annotations,
// both of which the kubelet sets from device plugins' answers. The pod's
// own cdi.k8s.io/* annotations are any pod author's to write: they request
// nothing (a pod could otherwise take every GPU of the node past the device
// plugin) and are returned as ignored.
func requestedDevices(cfg *ContainerConfig, podAnnotations map[string]string) (names, ignored []string, err error) {
	names, err = devices.Requested(cfg.CDIDevices, cfg.Annotations)
	return names, devices.AnnotationKeys(podAnnotations), err
}

// imageName is the name ContainerStatus reports for the image: the name the
// caller used when it is one of the image's tags, else its first tag.
func imageName(requested string, img *image.Image) string {
	for _, t := range img.RepoTags {
		if t == requested {
			return t
		}
	}
	if len(img.RepoTags) > 0 {
		return img.RepoTags[0]
	}
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return requested
}

// parseSignal reads an image STOPSIGNAL ("SIGTERM", "TERM" or "15").
func parseSignal(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("stop signal %q is out of range", s)
		}
		return n, nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return int(sig), nil
	}
	return 0, fmt.Errorf("unknown stop signal %q", s)
}
