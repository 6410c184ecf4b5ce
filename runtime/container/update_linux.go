package container

import (
	"fmt"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update applies new cgroup resource limits to a created or running
// container. Device rules are kept as they are.
func (g *Gen) Update(res *specs.LinuxResources) error {
	if g.fast != nil {
		g.fast.adoptMu.Lock()
		if !g.fast.adopted {
			defer g.fast.adoptMu.Unlock()
			return g.updateFast(res)
		}
		g.fast.adoptMu.Unlock()
	}
	cfg := g.lc.Config()
	if cfg.Cgroups == nil || cfg.Cgroups.Resources == nil {
		return fmt.Errorf("update %s: container has no cgroup", g.ID)
	}
	// specconv owns the OCI -> cgroup mapping; run it on a spec holding
	// only the new resources and keep the parts it does not describe.
	cgroupsPath := cfg.Cgroups.Path
	if c := cfg.Cgroups; c.Systemd {
		cgroupsPath = c.Parent + ":" + c.ScopePrefix + ":" + c.Name
	}
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{
		CgroupName:       g.ID,
		UseSystemdCgroup: cfg.Cgroups.Systemd,
		Spec:             &specs.Spec{Linux: &specs.Linux{CgroupsPath: cgroupsPath, Resources: res}},
	}, nil)
	if err != nil {
		return fmt.Errorf("update %s: convert resources: %w", g.ID, err)
	}
	cg.Devices = cfg.Cgroups.Devices
	cg.SkipDevices = cfg.Cgroups.SkipDevices
	cfg.Cgroups.Resources = cg.Resources
	if err := g.lc.Set(cfg); err != nil {
		return fmt.Errorf("update %s: %w", g.ID, err)
	}
	return nil
}
