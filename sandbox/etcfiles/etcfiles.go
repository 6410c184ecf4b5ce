// Package etcfiles writes the per-pod /etc/resolv.conf, /etc/hosts and
// /etc/hostname that every container of a pod bind-mounts.
//
// The files are written once, when the sandbox is created, before any
// container mounts them; they stay the same across in-place resets. Each write
// replaces the file atomically (temp file + rename), so a crash never leaves
// a half-written file. A rename gives the path a new inode, so a rewrite is
// not seen by a container that has already bind-mounted the old file.
package etcfiles

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/warmpod/warmpod/runtime/atomicfile"
)

// DNS is a pod's resolver configuration (the CRI DNSConfig).
type DNS struct {
	Servers, Searches, Options []string
}

// HostAlias is one extra /etc/hosts entry (a pod's hostAliases).
type HostAlias struct {
	IP        string
	Hostnames []string
}

// Limits on resolver configuration. glibc reads at most MaxNameservers
// nameserver lines and silently drops the rest, so more is an error rather
// than a surprise; the search limits are the ones the kubelet enforces.
const (
	MaxNameservers = 3
	MaxSearches    = 32
	MaxSearchChars = 2048
)

// Kernel and DNS name limits.
const (
	maxHostname   = 64 // HOST_NAME_MAX
	maxDomainName = 253
	maxLabel      = 63
)

// ErrInvalid is wrapped by every error caused by bad input; it is of class errdefs.ErrInvalidArgument.
var ErrInvalid = errdefs.ErrInvalidArgument.WithMessage("invalid pod etc file input")

// ValidateDNS checks dns against the resolver's rules. A nil dns is valid
// (it means: use the host's configuration).
func ValidateDNS(dns *DNS) error {
	if dns == nil {
		return nil
	}
	if len(dns.Servers) > MaxNameservers {
		return fmt.Errorf("%w: %d DNS servers given, at most %d are used by the resolver", ErrInvalid, len(dns.Servers), MaxNameservers)
	}
	for _, s := range dns.Servers {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%w: DNS server %q is not an IP address", ErrInvalid, s)
		}
	}
	if len(dns.Searches) > MaxSearches {
		return fmt.Errorf("%w: %d DNS search domains given, at most %d allowed", ErrInvalid, len(dns.Searches), MaxSearches)
	}
	if n := len(strings.Join(dns.Searches, " ")); n > MaxSearchChars {
		return fmt.Errorf("%w: DNS search list is %d characters long, at most %d allowed", ErrInvalid, n, MaxSearchChars)
	}
	for _, s := range dns.Searches {
		if err := checkDomain(strings.TrimSuffix(s, "."), maxDomainName, true); err != nil {
			return fmt.Errorf("%w: DNS search domain %q: %w", ErrInvalid, s, err)
		}
	}
	for _, o := range dns.Options {
		if o == "" || strings.ContainsAny(o, " \t\r\n#;") {
			return fmt.Errorf("%w: DNS option %q must be a single word such as ndots:5", ErrInvalid, o)
		}
	}
	return nil
}

// ValidateHostname checks that h can be set as a kernel hostname and is a
// valid DNS name.
func ValidateHostname(h string) error {
	if h == "" {
		return fmt.Errorf("%w: hostname is empty", ErrInvalid)
	}
	if err := checkDomain(h, maxHostname, false); err != nil {
		return fmt.Errorf("%w: hostname %q: %w", ErrInvalid, h, err)
	}
	return nil
}

// checkDomain reports why name is not a dot-separated list of DNS labels of
// letters, digits and '-' (and '_' where underscore is true, as search
// domains of service records use it).
func checkDomain(name string, maxLen int, underscore bool) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > maxLen {
		return fmt.Errorf("longer than %d characters", maxLen)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > maxLabel {
			return fmt.Errorf("label %q longer than %d characters", label, maxLabel)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for _, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || underscore && c == '_'
			if !ok {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}

// hostResolvConfs are tried in order when a pod has no DNS config. The
// second is systemd-resolved's list of upstream servers, used when the first
// only names the local stub resolver.
var hostResolvConfs = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

// WriteResolvConf writes the pod's resolv.conf. With a nil dns it copies the
// host's /etc/resolv.conf, dropping loopback nameservers: the pod has its own
// loopback, so a host-local resolver (127.0.0.53 of systemd-resolved, a
// dnsmasq on 127.0.0.1) is unreachable from it. If that drops every
// nameserver, systemd-resolved's upstream list is used when present. If
// still none is left the file has no nameserver at all and lookups fail
// fast; no public resolver is made up, since sending a node's queries to a
// third party is a decision for the cluster's DNS config, not the runtime.
func WriteResolvConf(path string, dns *DNS) error {
	if err := ValidateDNS(dns); err != nil {
		return err
	}
	var content []byte
	if dns == nil {
		var err error
		if content, err = hostResolvConf(hostResolvConfs); err != nil {
			return err
		}
	} else {
		var b bytes.Buffer
		for _, s := range dns.Servers {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		if len(dns.Searches) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
		}
		if len(dns.Options) > 0 {
			fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
		}
		content = b.Bytes()
	}
	if err := atomicfile.Write(path, content, 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

// hostResolvConf returns the first source with a nameserver the pod can
// reach, with its loopback nameservers removed, or else the first source
// filtered the same way. A missing source counts as empty.
func hostResolvConf(sources []string) ([]byte, error) {
	var first []byte
	for i, src := range sources {
		raw, err := os.ReadFile(src)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read host resolv.conf: %w", err)
		}
		filtered, reachable := dropLoopbackNameservers(raw)
		if reachable > 0 {
			return filtered, nil
		}
		if i == 0 {
			first = filtered
		}
	}
	return first, nil
}

// dropLoopbackNameservers removes nameserver lines naming a loopback address
// and counts the nameservers kept.
func dropLoopbackNameservers(raw []byte) (out []byte, kept int) {
	var b bytes.Buffer
	for line := range strings.Lines(string(raw)) {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "nameserver" {
			addr, err := netip.ParseAddr(fields[1])
			if err == nil && addr.WithZone("").IsLoopback() {
				continue
			}
			kept++
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), kept
}

// WriteHosts writes the pod's hosts file: the usual localhost entries, one
// line mapping each of ips to hostname (none when hostname is empty), then
// the pod's host aliases.
func WriteHosts(path string, hostname string, ips []net.IP, extra []HostAlias) error {
	if hostname != "" {
		if err := ValidateHostname(hostname); err != nil {
			return err
		}
	}
	for _, ip := range ips {
		if ip.To16() == nil {
			return fmt.Errorf("%w: pod IP %v is not an IP address", ErrInvalid, ip)
		}
	}
	for _, a := range extra {
		if _, err := netip.ParseAddr(a.IP); err != nil {
			return fmt.Errorf("%w: host alias IP %q is not an IP address", ErrInvalid, a.IP)
		}
		if len(a.Hostnames) == 0 {
			return fmt.Errorf("%w: host alias for %s has no hostnames", ErrInvalid, a.IP)
		}
		for _, h := range a.Hostnames {
			if err := checkDomain(h, maxDomainName, false); err != nil {
				return fmt.Errorf("%w: host alias %q for %s: %w", ErrInvalid, h, a.IP, err)
			}
		}
	}

	var b bytes.Buffer
	b.WriteString("# Pod hosts file, managed by warmpod.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("ff00::0\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	if hostname != "" {
		for _, ip := range ips {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	if len(extra) > 0 {
		b.WriteString("# Host aliases.\n")
		for _, a := range extra {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, " "))
		}
	}
	if err := atomicfile.Write(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	return nil
}

// WriteHostname writes the pod's hostname file.
func WriteHostname(path, hostname string) error {
	if err := ValidateHostname(hostname); err != nil {
		return err
	}
	if err := atomicfile.Write(path, []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("write hostname: %w", err)
	}
	return nil
}
