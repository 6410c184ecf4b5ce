package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/warmpod/warmpod/runtime/atomicfile"
)

// CNIConfig configures the CNI network. Zero fields take the defaults
// below, except CacheDir.
type CNIConfig struct {
	// ConfDir holds the network configuration; its first .conf, .conflist
	// or .json file by name is used (default /etc/cni/net.d).
	ConfDir string
	// BinDirs are searched for plugin binaries, in order (default
	// /opt/cni/bin, then /usr/lib/cni where distributions install them).
	BinDirs []string
	// CacheDir holds libcni's record of each pod's attachment (what DEL
	// needs after a daemon restart) and warmpod's own pod records
	// (required).
	CacheDir string
}

// Defaults of CNIConfig.
const DefaultCNIConfDir = "/etc/cni/net.d"

// DefaultCNIBinDirs are the plugin directories searched by default.
var DefaultCNIBinDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

// cniDelTimeout bounds the DEL that rolls back a failed ADD, which runs
// even when the request's context has ended.
const cniDelTimeout = time.Minute

// cniLib is the part of libcni the CNI network uses: *libcni.CNIConfig
// runs the plugins; unit tests use a recording fake.
type cniLib interface {
	AddNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error)
	CheckNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error
	DelNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error
	GetNetworkListCachedResult(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error)
	GetCachedAttachments(containerID string) ([]*libcni.NetworkAttachment, error)
}

// CNI wires pods into the network of the node's CNI configuration.
//
// Each sandbox gets one ADD when it is created and one DEL when it is
// stopped; its containers' in-place resets never call a plugin. Before
// ADD, a record of the pod (the configuration and arguments used) is saved,
// so that a DEL can follow even when the daemon died during the ADD, before
// libcni cached the attachment. DEL uses libcni's cached attachment, so it
// runs with the configuration the pod was set up with even after the conf
// dir changed or the daemon restarted.
//
// Operations on one pod ID are serialised; different pods proceed in
// parallel.
type CNI struct {
	cfg        CNIConfig
	lib        cniLib
	findPlugin func(name string, dirs []string) (string, error)
	records    jsonStore[cniRecord]
	locks      podLocks

	cidrMu sync.Mutex
	// podCIDRs are the ranges of the ipRanges capability (empty: the
	// configuration's own).
	podCIDRs []string
}

var _ Plugin = (*CNI)(nil)

// cniRecord is what Setup saved of a pod, before running the plugins.
type cniRecord struct {
	ID       string `json:"id"`
	ConfFile string `json:"confFile"`
	// Config is the network configuration list used, verbatim.
	Config         []byte         `json:"config"`
	NetNS          string         `json:"netns"`
	IfName         string         `json:"ifName"`
	Args           [][2]string    `json:"args"`
	CapabilityArgs map[string]any `json:"capabilityArgs,omitempty"`
	// Complete is set once ADD succeeded.
	Complete bool `json:"complete"`
}

func (r *cniRecord) runtimeConf() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: r.ID, NetNS: netnsIfExists(r.NetNS), IfName: r.IfName,
		Args: r.Args, CapabilityArgs: r.CapabilityArgs,
	}
}

func (r *cniRecord) list() (*libcni.NetworkConfigList, error) {
	l, err := libcni.NetworkConfFromBytes(r.Config)
	if err != nil {
		return nil, fmt.Errorf("network configuration recorded for pod %q (from %s): %w", r.ID, r.ConfFile, err)
	}
	return l, nil
}

// NewCNI returns the CNI network. It runs no plugin; a missing or broken
// configuration shows in Ready and fails Setup, so one can be installed
// after the daemon started (as network add-ons do).
func NewCNI(cfg CNIConfig) (*CNI, error) {
	if cfg.ConfDir == "" {
		cfg.ConfDir = DefaultCNIConfDir
	}
	if len(cfg.BinDirs) == 0 {
		cfg.BinDirs = DefaultCNIBinDirs
	}
	lib := libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, cfg.CacheDir, nil)
	return newCNI(cfg, lib, invoke.FindInPath)
}

func newCNI(cfg CNIConfig, lib cniLib, find func(string, []string) (string, error)) (*CNI, error) {
	if cfg.CacheDir == "" || !filepath.IsAbs(cfg.CacheDir) {
		return nil, fmt.Errorf("%w: CNI cache dir %q must be an absolute path", ErrInvalid, cfg.CacheDir)
	}
	for _, d := range append([]string{cfg.ConfDir}, cfg.BinDirs...) {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("%w: CNI directory %q must be an absolute path", ErrInvalid, d)
		}
	}
	c := &CNI{cfg: cfg, lib: lib, findPlugin: find, records: jsonStore[cniRecord]{dir: filepath.Join(cfg.CacheDir, "warmpod"), noun: "CNI record"}}
	if err := os.MkdirAll(c.records.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CNI record dir: %w", err)
	}
	switch b, err := os.ReadFile(filepath.Join(c.records.dir, podCIDRFile)); {
	case err == nil:
		if c.podCIDRs, err = parsePodCIDRs(string(b)); err != nil {
			return nil, fmt.Errorf("persisted pod CIDR: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read persisted pod CIDR: %w", err)
	}
	return c, nil
}

// Name implements Plugin.
func (c *CNI) Name() string { return "cni" }

// Ready implements Plugin: the configuration must parse and every plugin
// it names must be installed.
func (c *CNI) Ready() error {
	file, list, err := loadCNIConf(c.cfg.ConfDir)
	if err != nil {
		return fmt.Errorf("CNI network not ready: %w", err)
	}
	for _, p := range list.Plugins {
		if _, err := c.findPlugin(p.Network.Type, c.cfg.BinDirs); err != nil {
			return fmt.Errorf("CNI network not ready: %w: %s: plugin %q is not installed in %s",
				ErrCNIConfig, file, p.Network.Type, strings.Join(c.cfg.BinDirs, ", "))
		}
	}
	return nil
}

// UpdatePodCIDR makes the node's pod CIDR (from CRI UpdateRuntimeConfig)
// the ipRanges capability of pods set up from now on; plugins that take it
// (host-local) allocate from it. A dual-stack value ("v4,v6") gives two
// ranges; an empty value changes nothing.
func (c *CNI) UpdatePodCIDR(cidr string) error {
	cidrs, err := parsePodCIDRs(cidr)
	if err != nil || len(cidrs) == 0 {
		return err
	}
	c.cidrMu.Lock()
	defer c.cidrMu.Unlock()
	if err := atomicfile.Write(filepath.Join(c.records.dir, podCIDRFile), []byte(strings.Join(cidrs, ",")+"\n"), 0o600); err != nil {
		return fmt.Errorf("persist pod CIDR: %w", err)
	}
	c.podCIDRs = cidrs
	return nil
}

// capabilityArgs are the runtimeConfig values offered to the plugins;
// libcni passes each only to plugins that declare the capability.
func (c *CNI) capabilityArgs(pod Pod) (map[string]any, error) {
	args := map[string]any{}
	ports, err := cniPorts(pod.PortMappings)
	if err != nil {
		return nil, err
	}
	if len(ports) > 0 {
		args["portMappings"] = ports
	}
	bw, err := bandwidthOf(pod.Annotations)
	if err != nil {
		return nil, err
	}
	if bw != nil {
		args["bandwidth"] = bw
	}
	c.cidrMu.Lock()
	cidrs := c.podCIDRs
	c.cidrMu.Unlock()
	if len(cidrs) > 0 {
		var ranges [][]cniIPRange
		for _, s := range cidrs {
			ranges = append(ranges, []cniIPRange{{Subnet: s}})
		}
		args["ipRanges"] = ranges
	}
	if len(args) == 0 {
		return nil, nil
	}
	// Round-trip through JSON, so the record and libcni's cache hold the
	// same plain values whether the args were just built or read back.
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	var plain map[string]any
	if err := json.Unmarshal(b, &plain); err != nil {
		return nil, err
	}
	return plain, nil
}

// Setup implements Plugin: it runs ADD for the pod's network namespace.
func (c *CNI) Setup(ctx context.Context, pod Pod) (_ Result, retErr error) {
	if err := validateID(pod.ID); err != nil {
		return Result{}, err
	}
	if pod.NetNS == "" {
		return Result{}, fmt.Errorf("%w: pod %q has no network namespace path", ErrInvalid, pod.ID)
	}
	capArgs, err := c.capabilityArgs(pod)
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	unlock := c.locks.lock(pod.ID)
	defer unlock()

	old, err := c.records.load(pod.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
	}
	if old != nil && old.Complete {
		if res, err := c.cachedResult(old); err == nil {
			return res, nil
		}
	}
	if old != nil {
		// An interrupted or damaged Setup: release what it may hold first.
		if err := c.del(ctx, pod.ID, old); err != nil {
			return Result{}, fmt.Errorf("set up network of pod %q: undo earlier attempt: %w", pod.ID, err)
		}
	}

	file, list, err := loadCNIConf(c.cfg.ConfDir)
	if err != nil {
		return Result{}, fmt.Errorf("set up network of pod %q: %w", pod.ID, err)
	}
	rec := &cniRecord{
		ID: pod.ID, ConfFile: file, Config: list.Bytes, NetNS: pod.NetNS, IfName: podInterface,
		Args: cniArgs(pod), CapabilityArgs: capArgs,
	}
	if err := c.records.save(rec.ID, rec); err != nil {
		return Result{}, err
	}
	defer func() {
		if retErr == nil {
			return
		}
		// DEL what the plugins that succeeded made; with a fresh context,
		// as the request's may be what ended.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cniDelTimeout)
		defer cancel()
		if err := c.del(dctx, pod.ID, rec); err != nil {
			// The record stays, so that a later Setup or Teardown of the
			// pod ID retries the DEL.
			retErr = fmt.Errorf("%w (and undoing it: %w)", retErr, err)
			return
		}
		if err := c.records.remove(pod.ID); err != nil {
			retErr = fmt.Errorf("%w (and undoing it: %w)", retErr, err)
		}
	}()

	r, err := c.lib.AddNetworkList(ctx, list, rec.runtimeConf())
	if err != nil {
		return Result{}, fmt.Errorf("set up network of pod %q: CNI ADD of network %q (%s): %w", pod.ID, list.Name, file, err)
	}
	res, err := cniResult(r, podInterface)
	if err != nil {
		return Result{}, fmt.Errorf("set up network of pod %q: network %q (%s): %w", pod.ID, list.Name, file, err)
	}
	rec.Complete = true
	if err := c.records.save(rec.ID, rec); err != nil {
		return Result{}, err
	}
	return res, nil
}

// Teardown implements Plugin: it runs DEL for every attachment libcni
// cached for the pod (or, after a crash during ADD, for the pod's record)
// and forgets the pod. Per the CRI contract (StopPodSandbox must succeed
// for an unknown sandbox) a pod without a network is not an error. The
// record is removed last, so an interrupted Teardown can be repeated.
func (c *CNI) Teardown(ctx context.Context, pod Pod) error {
	if err := validateID(pod.ID); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock := c.locks.lock(pod.ID)
	defer unlock()

	rec, err := c.records.load(pod.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("tear down network of pod %q: %w", pod.ID, err)
	}
	if err := c.del(ctx, pod.ID, rec); err != nil {
		return fmt.Errorf("tear down network of pod %q: %w", pod.ID, err)
	}
	if err := c.records.remove(pod.ID); err != nil {
		return fmt.Errorf("tear down network of pod %q: %w", pod.ID, err)
	}
	return nil
}

// del runs DEL for pod id: for each attachment libcni cached (the
// configuration and arguments ADD used), else for rec when given.
func (c *CNI) del(ctx context.Context, id string, rec *cniRecord) error {
	atts, err := c.lib.GetCachedAttachments(id)
	if err != nil {
		return fmt.Errorf("read CNI cache: %w", err)
	}
	var errs []error
	for _, a := range atts {
		list, err := libcni.NetworkConfFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("cached configuration of network %q: %w", a.Network, err))
			continue
		}
		rt := &libcni.RuntimeConf{
			ContainerID: a.ContainerID, NetNS: netnsIfExists(a.NetNS), IfName: a.IfName,
			Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs,
		}
		if err := c.lib.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL of network %q: %w", a.Network, err))
		}
	}
	if len(atts) == 0 && rec != nil {
		list, err := rec.list()
		if err != nil {
			return err
		}
		if err := c.lib.DelNetworkList(ctx, list, rec.runtimeConf()); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL of network %q (%s): %w", list.Name, rec.ConfFile, err))
		}
	}
	return errors.Join(errs...)
}

// Status implements Plugin, from libcni's cached result of the pod's ADD.
func (c *CNI) Status(ctx context.Context, pod Pod) (Result, error) {
	if err := validateID(pod.ID); err != nil {
		return Result{}, err
	}
	rec, err := c.records.load(pod.ID)
	if err != nil {
		return Result{}, fmt.Errorf("network status of pod %q: %w", pod.ID, err)
	}
	if !rec.Complete {
		return Result{}, fmt.Errorf("network status of pod %q: %w (setup did not finish)", pod.ID, ErrNotFound)
	}
	res, err := c.cachedResult(rec)
	if err != nil {
		return Result{}, fmt.Errorf("network status of pod %q: %w", pod.ID, err)
	}
	return res, nil
}

func (c *CNI) cachedResult(rec *cniRecord) (Result, error) {
	list, err := rec.list()
	if err != nil {
		return Result{}, err
	}
	r, err := c.lib.GetNetworkListCachedResult(list, rec.runtimeConf())
	if err != nil {
		return Result{}, fmt.Errorf("cached CNI result: %w", err)
	}
	if r == nil {
		return Result{}, fmt.Errorf("%w: no cached CNI result", ErrNotFound)
	}
	return cniResult(r, rec.IfName)
}

// Check runs the plugins' CHECK for the pod, with the configuration it was
// set up with: an error says the pod's network is no longer as ADD left it.
func (c *CNI) Check(ctx context.Context, pod Pod) error {
	if err := validateID(pod.ID); err != nil {
		return err
	}
	unlock := c.locks.lock(pod.ID)
	defer unlock()
	rec, err := c.records.load(pod.ID)
	if err != nil {
		return fmt.Errorf("check network of pod %q: %w", pod.ID, err)
	}
	list, err := rec.list()
	if err != nil {
		return err
	}
	if err := c.lib.CheckNetworkList(ctx, list, rec.runtimeConf()); err != nil {
		return fmt.Errorf("check network of pod %q: CNI CHECK of network %q: %w", pod.ID, list.Name, err)
	}
	return nil
}
