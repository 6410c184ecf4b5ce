package oci

import (
	"path/filepath"
	"strings"
)

// defaultPath is the PATH a container gets when neither the image nor the container sets one; it is the
// one Docker, containerd and CRI-O use, so images behave the same everywhere.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// processArgs applies the Kubernetes rules: a command replaces the image's entrypoint and drops its cmd;
// args alone replace the cmd.
func processArgs(c *Container, img *Image) ([]string, error) {
	var argv []string
	switch {
	case len(c.Command) > 0:
		argv = append(append(argv, c.Command...), c.Args...)
	case len(c.Args) > 0:
		argv = append(append(argv, entrypoint(img)...), c.Args...)
	default:
		argv = append(append(argv, entrypoint(img)...), img.Cmd...)
	}
	if len(argv) == 0 {
		return nil, invalidf("container %q has no command: neither the container nor its image sets one", c.Name)
	}
	return argv, nil
}

// entrypoint drops an entrypoint of [""]: Docker writes it for `ENTRYPOINT [""]`, which means "none".
func entrypoint(img *Image) []string {
	if len(img.Entrypoint) == 1 && img.Entrypoint[0] == "" {
		return nil
	}
	return img.Entrypoint
}

// processEnv layers PATH and HOSTNAME defaults, the image's env and the container's env; a later layer
// replaces an earlier entry for the same key in place, so the image's order is kept.
func processEnv(c *Container, img *Image, hostname string) ([]string, error) {
	env := make([]string, 0, 2+len(img.Env)+len(c.Env))
	index := make(map[string]int, cap(env))
	set := func(kv string) {
		key, _, _ := strings.Cut(kv, "=")
		if i, ok := index[key]; ok {
			env[i] = kv
			return
		}
		index[key] = len(env)
		env = append(env, kv)
	}
	set(defaultPath)
	set("HOSTNAME=" + hostname)
	for _, kv := range img.Env {
		set(kv)
	}
	for i, kv := range c.Env {
		if key, _, ok := strings.Cut(kv, "="); !ok || key == "" {
			return nil, invalidf("env[%d] %q is not KEY=VALUE", i, kv)
		}
		set(kv)
	}
	return env, nil
}

// processCwd picks the container's working dir, else the image's, else "/"; the spec requires it absolute.
func processCwd(c *Container, img *Image) (string, error) {
	cwd, field := c.WorkingDir, "working dir"
	if cwd == "" {
		cwd, field = img.WorkingDir, "image working dir"
	}
	if cwd == "" {
		return "/", nil
	}
	if !filepath.IsAbs(cwd) {
		return "", invalidf("%s %q is not an absolute path", field, cwd)
	}
	return filepath.Clean(cwd), nil
}
