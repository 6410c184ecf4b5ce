// Command genprofile breaks the CPU time of container generations down by
// what it is spent on: it reads the samples of a system-wide "perf record -g"
// of runtime/container's BenchmarkGeneration (as "perf script" prints them)
// and attributes each to the process it ran in (the shim's side, libcontainer's
// init stages, the fast spawner's fork server and init, the container's
// command, kernel threads) and to the kernel operation on its call stack
// (mount, pivot_root, exec, cgroup placement...), or to user space.
//
//	perf script -F comm,tid,period,ip,sym,dso | genprofile -n GENERATIONS
//
// integration/bench/generation-profile.sh runs the whole measurement.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// roles maps a process name (comm) to its part in making a generation.
func role(comm string) string {
	switch {
	case strings.HasPrefix(comm, "runc:[0"), strings.HasPrefix(comm, "runc:[1"):
		return "nsexec stages"
	case strings.HasPrefix(comm, "runc:[2"):
		return "libcontainer init"
	case comm == "warmpod:init":
		return "fast init"
	case comm == "warmpod-spawner":
		return "fork server"
	case strings.HasSuffix(comm, ".test"), comm == "warmpod", strings.HasPrefix(comm, "memfd:"), isNumber(comm):
		// A test binary run from a sealed copy (/proc/self/fd/N) is named
		// after the descriptor.
		return "shim side"
	case comm == "true", comm == "busybox", comm == "sleep", comm == "probe":
		return "command"
	case strings.HasPrefix(comm, "kworker"), strings.HasPrefix(comm, "rcu"), strings.HasPrefix(comm, "ksoftirqd"),
		strings.HasPrefix(comm, "migration"), comm == "swapper", strings.HasPrefix(comm, "kcompactd"):
		return "kernel threads"
	}
	return "other processes"
}

// operations are kernel functions that name what a stack is doing, in the
// order they are looked for: the first one found on the stack wins.
var operations = []struct{ fn, op string }{
	{"__x64_sys_pivot_root", "pivot_root"},
	{"cgroup_procs_write", "cgroup placement"},
	{"__cgroup1_procs_write", "cgroup placement"},
	{"cgroup_attach_task", "cgroup placement"},
	{"cgroup_mkdir", "cgroup create"},
	{"cgroup_rmdir", "cgroup remove"},
	{"css_free_rwork_fn", "cgroup remove"},
	{"css_release_work_fn", "cgroup remove"},
	{"css_killed_work_fn", "cgroup remove"},
	{"cgroup_file_write", "cgroup limits"},
	{"__x64_sys_umount", "unmount"},
	{"cleanup_mnt", "unmount"},
	{"put_mnt_ns", "unmount"},
	{"__x64_sys_mount", "mount"},
	{"__x64_sys_move_mount", "mount"},
	{"__x64_sys_open_tree", "mount"},
	{"__x64_sys_fsmount", "mount"},
	{"__x64_sys_fsconfig", "mount"},
	{"__x64_sys_mount_setattr", "mount"},
	{"__x64_sys_seccomp", "seccomp"},
	{"__x64_sys_capset", "credentials"},
	{"__x64_sys_setgroups", "credentials"},
	{"__x64_sys_setuid", "credentials"},
	{"__x64_sys_setgid", "credentials"},
	{"__x64_sys_setns", "namespaces"},
	{"__x64_sys_unshare", "namespaces"},
	{"__x64_sys_execve", "exec"},
	{"__x64_sys_execveat", "exec"},
	{"__x64_sys_clone", "fork"},
	{"__x64_sys_clone3", "fork"},
	{"__x64_sys_vfork", "fork"},
	{"ret_from_fork", "fork"},
	{"__x64_sys_exit_group", "exit"},
	{"do_exit", "exit"},
	{"__x64_sys_wait4", "wait"},
	{"__x64_sys_waitid", "wait"},
	{"__x64_sys_unlinkat", "file removal"},
	{"__x64_sys_rmdir", "file removal"},
	{"__x64_sys_mkdir", "files: create"},
	{"__x64_sys_mkdirat", "files: create"},
	{"__x64_sys_mknodat", "files: create"},
	{"__x64_sys_symlinkat", "files: create"},
	{"__x64_sys_openat", "files: open"},
	{"__x64_sys_openat2", "files: open"},
	{"__x64_sys_close", "files: close"},
	{"__x64_sys_close_range", "files: close"},
	{"__x64_sys_newfstatat", "files: stat"},
	{"__x64_sys_statx", "files: stat"},
	{"__x64_sys_read", "read/write"},
	{"__x64_sys_write", "read/write"},
	{"__x64_sys_pread64", "read/write"},
	{"__x64_sys_sendmsg", "sockets"},
	{"__x64_sys_recvmsg", "sockets"},
	{"__x64_sys_futex", "futex"},
	{"__x64_sys_epoll_pwait", "polling"},
	{"__x64_sys_nanosleep", "polling"},
	{"exc_page_fault", "page faults"},
	{"__x64_sys_mmap", "memory maps"},
	{"__x64_sys_munmap", "memory maps"},
	{"__x64_sys_mprotect", "memory maps"},
	{"__x64_sys_madvise", "memory maps"},
	{"do_syscall_64", "other system calls"},
	{"schedule", "scheduling"},
	{"__schedule", "scheduling"},
}

func main() {
	gens := flag.Int("n", 1, "generations the profile covers")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *gens); err != nil {
		fmt.Fprintln(os.Stderr, "genprofile:", err)
		os.Exit(1)
	}
}

type sample struct {
	comm   string
	period int64
	stack  []string
	// kernel is set when a frame of the stack is the kernel's.
	kernel bool
}

func run(in io.Reader, out io.Writer, gens int) error {
	// ns[role][op]
	ns := map[string]map[string]int64{}
	roleTotal := map[string]int64{}
	opTotal := map[string]int64{}
	var cur *sample
	flush := func() {
		if cur == nil {
			return
		}
		r := role(cur.comm)
		op := "user space"
		if cur.kernel {
			op = classify(cur.stack)
		}
		if ns[r] == nil {
			ns[r] = map[string]int64{}
		}
		ns[r][op] += cur.period
		roleTotal[r] += cur.period
		opTotal[op] += cur.period
		cur = nil
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] != '\t' && line[0] != ' ' {
			flush()
			s, err := header(line)
			if err != nil {
				return err
			}
			cur = s
			continue
		}
		if cur != nil {
			// "ip sym (dso)"
			f := strings.Fields(line)
			if len(f) >= 2 {
				cur.stack = append(cur.stack, f[1])
			}
			if strings.HasSuffix(line, "([kernel.kallsyms])") {
				cur.kernel = true
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return err
	}

	roles := sortedBy(roleTotal)
	ops := sortedBy(opTotal)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "CPU ms per generation\t")
	for _, r := range roles {
		fmt.Fprintf(tw, "%s\t", r)
	}
	fmt.Fprintf(tw, "total\t\n")
	per := func(v int64) string { return fmt.Sprintf("%.2f", float64(v)/1e6/float64(gens)) }
	for _, op := range ops {
		fmt.Fprintf(tw, "%s\t", op)
		for _, r := range roles {
			fmt.Fprintf(tw, "%s\t", per(ns[r][op]))
		}
		fmt.Fprintf(tw, "%s\t\n", per(opTotal[op]))
	}
	fmt.Fprintf(tw, "total\t")
	var all int64
	for _, r := range roles {
		fmt.Fprintf(tw, "%s\t", per(roleTotal[r]))
		all += roleTotal[r]
	}
	fmt.Fprintf(tw, "%s\t\n", per(all))
	return tw.Flush()
}

// header parses "comm tid period" (comm may hold spaces).
func header(line string) (*sample, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return nil, fmt.Errorf("unexpected sample line %q (want perf script -F comm,tid,period,ip,sym,dso)", line)
	}
	period, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("sample line %q: period: %w", line, err)
	}
	return &sample{comm: strings.Join(f[:len(f)-2], " "), period: period}, nil
}

// classify names the kernel operation a stack (leaf first) is in: the
// first function of operations found on it, or "kernel, other".
func classify(stack []string) string {
	for _, o := range operations {
		for _, fn := range stack {
			if fn == o.fn || strings.HasPrefix(fn, o.fn+"+") {
				return o.op
			}
		}
	}
	return "kernel, other"
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func sortedBy(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	return keys
}
