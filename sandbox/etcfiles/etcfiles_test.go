package etcfiles

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteResolvConf(t *testing.T) {
	for _, tc := range []struct {
		name string
		dns  *DNS
		want string
	}{
		{
			name: "full",
			dns: &DNS{
				Servers:  []string{"10.96.0.10", "fe80::1%eth0"},
				Searches: []string{"default.svc.cluster.local", "svc.cluster.local", "_tcp.example.com."},
				Options:  []string{"ndots:5", "edns0"},
			},
			want: "nameserver 10.96.0.10\nnameserver fe80::1%eth0\n" +
				"search default.svc.cluster.local svc.cluster.local _tcp.example.com.\n" +
				"options ndots:5 edns0\n",
		},
		{name: "servers only", dns: &DNS{Servers: []string{"1.1.1.1"}}, want: "nameserver 1.1.1.1\n"},
		{name: "empty config", dns: &DNS{}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := WriteResolvConf(path, tc.dns); err != nil {
				t.Fatal(err)
			}
			if got := read(t, path); got != tc.want {
				t.Errorf("resolv.conf = %q, want %q", got, tc.want)
			}
			st, err := os.Stat(path)
			if err != nil || st.Mode().Perm() != 0o644 {
				t.Errorf("mode = %v, %v; want 0644", st.Mode(), err)
			}
		})
	}
}

func TestValidateDNS(t *testing.T) {
	long := strings.Repeat("a", 64)
	many := make([]string, MaxSearches+1)
	for i := range many {
		many[i] = "example.com"
	}
	wide := make([]string, 10)
	for i := range wide {
		wide[i] = strings.Repeat(strings.Repeat("b", 60)+".", 4) + "com"
	}
	for _, tc := range []struct {
		name    string
		dns     DNS
		wantArg string // the bad value the error must name
	}{
		{"too many servers", DNS{Servers: []string{"1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"}}, "4 DNS servers"},
		{"server not an IP", DNS{Servers: []string{"dns.example.com"}}, "dns.example.com"},
		{"too many searches", DNS{Searches: many}, "33 DNS search"},
		{"search list too long", DNS{Searches: wide}, "characters long"},
		{"label too long", DNS{Searches: []string{long + ".com"}}, long},
		{"empty label", DNS{Searches: []string{"a..b"}}, "a..b"},
		{"bad character", DNS{Searches: []string{"ex ample.com"}}, "ex ample.com"},
		{"leading dash", DNS{Searches: []string{"-a.com"}}, "-a.com"},
		{"option with space", DNS{Options: []string{"ndots:5 x"}}, "ndots:5 x"},
		{"empty option", DNS{Options: []string{""}}, `""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			err := WriteResolvConf(path, &tc.dns)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantArg) {
				t.Fatalf("WriteResolvConf = %v, want ErrInvalid naming %q", err, tc.wantArg)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file written despite invalid input")
			}
		})
	}
}

func TestHostResolvConf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources []string // contents; "-" means the file is missing
		want    string
	}{
		{
			name:    "loopback dropped, rest kept",
			sources: []string{"# generated\nnameserver 127.0.0.1\nnameserver 192.168.1.1\nsearch lan\noptions edns0", "-"},
			want:    "# generated\nnameserver 192.168.1.1\nsearch lan\noptions edns0\n",
		},
		{
			name:    "ipv6 loopback dropped",
			sources: []string{"nameserver ::1\nnameserver 2001:db8::53\n", "-"},
			want:    "nameserver 2001:db8::53\n",
		},
		{
			name:    "systemd-resolved stub falls back to upstream list",
			sources: []string{"nameserver 127.0.0.53\nsearch corp\n", "nameserver 10.0.0.2\nsearch corp\n"},
			want:    "nameserver 10.0.0.2\nsearch corp\n",
		},
		{
			name:    "only loopback anywhere leaves no nameserver",
			sources: []string{"nameserver 127.0.0.53\nsearch corp\n", "-"},
			want:    "search corp\n",
		},
		{name: "no host file", sources: []string{"-", "-"}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for i, c := range tc.sources {
				p := filepath.Join(dir, "src"+string(rune('0'+i)))
				if c != "-" {
					if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				paths = append(paths, p)
			}
			got, err := hostResolvConf(paths)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// The nil-config path reads the real host file; it must at least produce a
// file without loopback nameservers.
func TestWriteResolvConfFromHost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := WriteResolvConf(path, nil); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(read(t, path)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" && strings.HasPrefix(f[1], "127.") {
			t.Errorf("loopback nameserver copied: %q", line)
		}
	}
}

func TestWriteHosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	err := WriteHosts(path, "web-0", []net.IP{net.ParseIP("10.88.0.5"), net.ParseIP("fd00::5")},
		[]HostAlias{{IP: "10.1.2.3", Hostnames: []string{"db", "db.internal"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := read(t, path)
	for _, want := range []string{
		"127.0.0.1\tlocalhost\n",
		"::1\tlocalhost ip6-localhost ip6-loopback\n",
		"10.88.0.5\tweb-0\n",
		"fd00::5\tweb-0\n",
		"10.1.2.3\tdb db.internal\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "web-0") > strings.Index(got, "db.internal") {
		t.Errorf("host aliases must follow the pod's own entries:\n%s", got)
	}

	// Rewriting replaces the whole file.
	if err := WriteHosts(path, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); strings.Contains(got, "web-0") || strings.Contains(got, "db") {
		t.Errorf("old entries survived a rewrite:\n%s", got)
	}
}

func TestWriteHostsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hostname string
		ips      []net.IP
		extra    []HostAlias
		wantArg  string
	}{
		{"bad hostname", "web_0", nil, nil, "web_0"},
		{"hostname too long", strings.Repeat("a", 65), nil, nil, "longer than 64"},
		{"bad pod ip", "web", []net.IP{{1, 2, 3}}, nil, "not an IP"},
		{"bad alias ip", "web", nil, []HostAlias{{IP: "1.2.3", Hostnames: []string{"x"}}}, "1.2.3"},
		{"alias without names", "web", nil, []HostAlias{{IP: "1.2.3.4"}}, "no hostnames"},
		{"bad alias name", "web", nil, []HostAlias{{IP: "1.2.3.4", Hostnames: []string{"a b"}}}, "a b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hosts")
			err := WriteHosts(path, tc.hostname, tc.ips, tc.extra)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantArg) {
				t.Fatalf("WriteHosts = %v, want ErrInvalid naming %q", err, tc.wantArg)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file written despite invalid input")
			}
		})
	}
}

func TestWriteHostname(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hostname")
	if err := WriteHostname(path, "web-0.example"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != "web-0.example\n" {
		t.Errorf("hostname file = %q", got)
	}
	for _, bad := range []string{"", "-web", "web-", "we b", strings.Repeat("a", 65)} {
		if err := WriteHostname(path, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("WriteHostname(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("dir holds %v (%v), want only the hostname file (no temp files)", entries, err)
	}
}

func TestWriteFailsInMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "hostname")
	if err := WriteHostname(path, "web"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("WriteHostname = %v, want a not-exist error", err)
	}
}
