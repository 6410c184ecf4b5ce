// Command probe reports, as one JSON object on stdout, what a container's
// process finds about itself: namespaces, mounts, cgroups and their limits,
// credentials, capabilities, no_new_privs, seccomp, rlimits, environment,
// working directory, hostname, devices, masked paths and more. Tests run it
// as a container's command (build it with CGO_ENABLED=0: it must run in any
// root filesystem) and compare what two ways of making the same container
// report, as youki's runtimetest checks a container from the inside.
//
//	probe [PATH...]   PATH: extra files to stat and read (masked paths, say)
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Report is what probe prints.
type Report struct {
	Namespaces map[string]string `json:"namespaces"`
	Mountinfo  []string          `json:"mountinfo"`
	Cgroup     []string          `json:"cgroup"`
	// CgroupFiles holds the limit files of the process's cgroups, by path
	// under /sys/fs/cgroup.
	CgroupFiles map[string]string `json:"cgroupFiles"`
	// Status holds the credential, capability and security lines of
	// /proc/self/status.
	Status      map[string]string `json:"status"`
	Limits      []string          `json:"limits"`
	Env         []string          `json:"env"`
	Cwd         string            `json:"cwd"`
	Hostname    string            `json:"hostname"`
	Domainname  string            `json:"domainname"`
	OOMScoreAdj string            `json:"oomScoreAdj"`
	// Ppid comes from /proc/self/stat; SessionLeader and GroupLeader tell
	// whether the process leads its session and process group.
	Ppid                       string
	SessionLeader, GroupLeader bool
	Dumpable                   int               `json:"dumpable"`
	Keyring                    string            `json:"keyring"`
	Dev                        []string          `json:"dev"`
	Fds                        []string          `json:"fds"`
	Paths                      map[string]string `json:"paths"`
	Sched                      int               `json:"sched"`
	Errors                     []string          `json:"errors,omitempty"`
}

func main() {
	r := &Report{Namespaces: map[string]string{}, CgroupFiles: map[string]string{}, Status: map[string]string{}, Paths: map[string]string{}}
	fail := func(what string, err error) { r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", what, err)) }

	nss, _ := os.ReadDir("/proc/self/ns")
	for _, e := range nss {
		if l, err := os.Readlink("/proc/self/ns/" + e.Name()); err == nil {
			r.Namespaces[e.Name()] = l
		}
	}
	r.Mountinfo = lines("/proc/self/mountinfo", fail)
	r.Cgroup = lines("/proc/self/cgroup", fail)
	limitFiles := []string{
		"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.swappiness",
		"cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpuset.cpus", "cpuset.mems", "pids.max",
		"devices.list", "blkio.weight", "memory.max", "memory.high", "memory.min", "memory.low", "memory.swap.max",
		"cpu.max", "cpu.weight", "io.weight", "cgroup.type", "cgroup.controllers",
	}
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		for _, f := range limitFiles {
			if data, err := os.ReadFile(filepath.Join(p, f)); err == nil {
				r.CgroupFiles[strings.TrimPrefix(filepath.Join(p, f), "/sys/fs/cgroup/")] = strings.TrimSpace(string(data))
			}
		}
		return nil
	})
	for _, l := range lines("/proc/self/status", fail) {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch k {
		case "Umask", "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
			"Seccomp", "Seccomp_filters", "SigBlk", "SigIgn", "SigCgt", "Cpus_allowed_list", "Mems_allowed_list":
			r.Status[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	r.Limits = lines("/proc/self/limits", fail)
	r.Env = os.Environ()
	sort.Strings(r.Env)
	r.Cwd, _ = os.Getwd()
	if data, err := os.ReadFile("/proc/sys/kernel/hostname"); err == nil {
		r.Hostname = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/sys/kernel/domainname"); err == nil {
		r.Domainname = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil {
		r.OOMScoreAdj = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/self/stat"); err == nil {
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		self := strconv.Itoa(os.Getpid())
		r.Ppid, r.GroupLeader, r.SessionLeader = f[1], f[2] == self, f[3] == self
	}
	const prGetDumpable = 3
	d, _, _ := syscall.RawSyscall(syscall.SYS_PRCTL, prGetDumpable, 0, 0)
	r.Dumpable = int(d)
	const keyctlGetKeyringID, keyctlDescribe, keySpecSessionKeyring = 0, 6, ^uintptr(2)
	if id, _, e := syscall.RawSyscall(syscall.SYS_KEYCTL, keyctlGetKeyringID, keySpecSessionKeyring, 0); e == 0 {
		buf := make([]byte, 256)
		if n, _, e := syscall.RawSyscall6(syscall.SYS_KEYCTL, keyctlDescribe, id, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0); e == 0 && n > 0 {
			r.Keyring = cstr(buf[:n])
		}
	}
	_ = filepath.WalkDir("/dev", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if p != "/dev" && d.IsDir() && isMount(p, r.Mountinfo) {
			r.Dev = append(r.Dev, describe(p))
			return filepath.SkipDir
		}
		r.Dev = append(r.Dev, describe(p))
		return nil
	})
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		var st syscall.Stat_t
		t := "?"
		if err := syscall.Fstat(atoi(e.Name()), &st); err == nil {
			t = fmt.Sprintf("mode=%o uid=%d rdev=%d:%d", st.Mode&syscall.S_IFMT, st.Uid, st.Rdev>>8&0xfff, st.Rdev&0xff|st.Rdev>>12&0xfff00)
		}
		r.Fds = append(r.Fds, e.Name()+" "+t)
	}
	for _, p := range os.Args[1:] {
		r.Paths[p] = describe(p)
		// Whether there is anything to read, not how much: the size of
		// live kernel files changes from one read to the next.
		if data, err := os.ReadFile(p); err == nil && len(data) == 0 {
			r.Paths[p] += " reads empty"
		} else if err == nil {
			r.Paths[p] += " reads data"
		} else {
			r.Paths[p] += " read: " + errnoOf(err)
		}
		if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			f.Close()
			r.Paths[p] += " writable"
		} else {
			r.Paths[p] += " write: " + errnoOf(err)
		}
	}
	r.Sched, _, _ = syscallInt(syscall.SYS_SCHED_GETSCHEDULER)

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(r); err != nil {
		os.Exit(1)
	}
}

func syscallInt(nr uintptr) (int, uintptr, syscall.Errno) {
	r, r2, e := syscall.RawSyscall(nr, 0, 0, 0)
	return int(r), r2, e
}

func lines(path string, fail func(string, error)) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		fail(path, err)
		return nil
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func cstr(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func errnoOf(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// describe is a path's type, mode, owner, device numbers and link target.
func describe(p string) string {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return p + " " + errnoOf(&os.PathError{Err: err})
	}
	s := fmt.Sprintf("%s mode=%o uid=%d gid=%d", p, st.Mode, st.Uid, st.Gid)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR, syscall.S_IFBLK:
		s += fmt.Sprintf(" rdev=%d:%d", st.Rdev>>8&0xfff, st.Rdev&0xff|st.Rdev>>12&0xfff00)
	case syscall.S_IFLNK:
		t, _ := os.Readlink(p)
		s += " -> " + t
	}
	return s
}

// isMount tells whether p is a mount point according to mountinfo.
func isMount(p string, mountinfo []string) bool {
	for _, l := range mountinfo {
		if f := strings.Fields(l); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}
