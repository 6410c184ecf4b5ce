package image

import (
	"fmt"
	"os"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/google/go-containerregistry/pkg/authn"
)

// readAuthFile reads the credentials of a Docker config.json ("auths"; the "auth" field or username and
// password, or an identity token) by normalised registry host. Credential helpers and stores it names are
// not run: the node's file is the credential.
func readAuthFile(path string) (map[string]authn.AuthConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("registry auth file: %w", err)
	}
	defer f.Close()
	cf := configfile.New(path)
	if err := cf.LoadFromReader(f); err != nil {
		return nil, fmt.Errorf("registry auth file %s: %w", path, err)
	}
	out := map[string]authn.AuthConfig{}
	for key, a := range cf.AuthConfigs {
		host := normaliseHost(credentials.ConvertToHostname(key))
		out[host] = authn.AuthConfig{
			Username:      a.Username,
			Password:      a.Password,
			IdentityToken: a.IdentityToken,
			RegistryToken: a.RegistryToken,
		}
	}
	return out, nil
}

// fileAuthenticator is the node's credential for host from the auth file, anonymous when it has none. The
// file is read at each pull, so a rotated credential is used without a restart.
func (nc *netConfig) fileAuthenticator(host string) (authn.Authenticator, error) {
	if nc.authFile == "" {
		return authn.Anonymous, nil
	}
	auths, err := readAuthFile(nc.authFile)
	if err != nil {
		return nil, err
	}
	a, ok := auths[normaliseHost(host)]
	if !ok || a == (authn.AuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(a), nil
}
