// The fast spawner's fork server and container init (see spawner_linux.go).
//
// The fork server is the warmpod binary started by the shim with
// _WARMPOD_SPAWNER set. A constructor catches it before the Go runtime
// starts, so it is a single-threaded C process for its whole life: it may
// fork without exec, which a Go process may not. It reads requests from the
// socket named by the variable, clones one child per request and answers with
// the child's pid. The child runs the request's plan (namespaces, mounts,
// pivot_root, credentials, seccomp), reports on its status pipe, blocks until
// the shim writes to its release pipe, and execs the container's command.
//
// The plan is a list of operations prepared by the Go side; this file only
// carries them out. Every operation corresponds to a step of libcontainer's
// init, in libcontainer's order (see plan_linux.go).

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/ptrace.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif
#ifndef SCHED_IDLE
#define SCHED_IDLE 5
#endif

struct wp_open_how {
	uint64_t flags;
	uint64_t mode;
	uint64_t resolve;
};
#define WP_RESOLVE_NO_MAGICLINKS 0x02
#define WP_RESOLVE_NO_SYMLINKS 0x04
#define WP_RESOLVE_BENEATH 0x08
#define WP_RESOLVE_IN_ROOT 0x10

#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_SETPERM 5
#define KEYCTL_DESCRIBE 6

// Keep in sync with spawner_linux.go.
enum {
	REQ_MAGIC = 0x77707370, // "wpsp"
	MAX_REQ = 1 << 20,
	MAX_FDS = 16,
	MAX_PHASES = 32,
};

enum op {
	OP_END = 0,
	OP_PHASE,          // u32 phase id
	OP_SCHED_IDLE,     //
	OP_CGROUP_JOIN,    // str cgroup dir
	OP_OOM_SCORE,      // str value
	OP_NONDUMPABLE,    //
	OP_SETNS,          // u32 nstype, str path
	OP_UNSHARE,        // u32 flags
	OP_SETSID,         //
	OP_KEYRING,        // str name, u32 mask, u32 setbits
	OP_PREPARE_ROOT,   // u32 root propagation (0: rslave)
	OP_MOUNT,          // u32 kind, u32 flags, u32 cleared, u32 nprop, u32 props[], str src, str dst, str fstype, str data
	OP_MKNOD,          // u32 mode, u32 major, u32 minor, u32 uid, u32 gid, str path
	OP_PTMX,           //
	OP_SYMLINK,        // str target, str link
	OP_PIVOT,          //
	OP_ROOT_PROPAGATE, // u32 flags
	OP_REOPEN_DEVNULL, //
	OP_MKDIR_CWD,      // str cwd
	OP_REMOUNT_RO,     // u32 flags, str dst
	OP_ROOT_RO,        //
	OP_UMASK,          // u32 mask
	OP_HOSTNAME,       // str
	OP_DOMAINNAME,     // str
	OP_SYSCTL,         // str key, str value
	OP_READONLY_PATH,  // str path
	OP_MASK_PATHS,     // u32 n, str paths[]
	OP_NNP,            //
	OP_RLIMIT,         // u32 resource, u64 soft, u64 hard
	OP_SECCOMP,        // u32 flags, u32 len, sock_filter[len]
	OP_CHDIR_TRY,      // str cwd
	OP_CAPBSET,        // u64 keep mask, u32 last cap
	OP_KEEPCAPS,       // u32 on
	OP_FIX_STDIO,      // u32 uid
	OP_SETGROUPS,      // u32 n, u32 gids[]
	OP_SETGID,         // u32 gid
	OP_SETUID,         // u32 uid
	OP_CHDIR_LATE,     // str cwd
	OP_VERIFY_CWD,     //
	OP_CAPSET,         // u64 effective, u64 permitted, u64 inheritable
	OP_AMBIENT,        // u64 mask
	OP_HOME_ENV,       // u32 uid
	OP_LOOKPATH,       // str file, str PATH
	OP_READY,          //
	OP_EXEC,           // u32 argc, str args[], u32 envc, str env[]
};

// Mount kinds of OP_MOUNT.
enum {
	MK_PROCSYS = 1, // proc, sysfs: mounted on an ordinary directory only
	MK_GENERIC,     // tmpfs, mqueue, devpts...
	MK_BIND,
	MK_CGROUP2,
};

// Request header; the strings and the plan follow it.
struct req {
	uint32_t magic;
	uint32_t len; // of the whole request
	uint64_t clone_flags;
	int32_t fd_stdin, fd_stdout, fd_stderr, fd_status, fd_release, fd_cgroup;
	uint32_t rootfs_len; // rootfs path follows the header, NUL-terminated
	uint32_t pidns_len;  // then the pid namespace to create the child in ("" for none)
	uint32_t plan_len;   // then the plan
	uint32_t kind;       // REQ_SPAWN or REQ_FILTER
};

enum {
	REQ_SPAWN = 0,
	// REQ_FILTER reads the seccomp program of thread clone_flags: the
	// server stops it for a moment with ptrace. The shim cannot: it is
	// the thread's parent, and its own waiter would take the ptrace stop
	// for an exit.
	REQ_FILTER = 1,
	MAX_FILTER = 4096,
};

// Response to a request: the child's pid, or -errno.
struct resp {
	int32_t pid;
	int32_t err;
	char msg[200];
};

/* ---------------------------------------------------------------------- */
/* Child side                                                             */

static int status_fd = -1, release_fd = -1, root_fd = -1;
static const char *rootfs;
static int64_t phases[MAX_PHASES];
static const char *exec_path;
static int cwd_done;
static const char *home_env;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

// fail reports msg (and errno when set) on the status pipe and exits.
static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
	int saved = errno;
	char buf[1024];
	va_list ap;
	buf[0] = 'E';
	va_start(ap, fmt);
	int n = vsnprintf(buf + 1, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	n++;
	if (saved != 0 && (size_t)n < sizeof(buf) - 1)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", strerror(saved));
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	write_all(status_fd, buf, (size_t)n);
	_exit(1);
}

struct reader {
	const uint8_t *p, *end;
};

static uint32_t rd_u32(struct reader *r)
{
	uint32_t v;
	if (r->end - r->p < 4) {
		errno = 0;
		fail("plan truncated");
	}
	memcpy(&v, r->p, 4);
	r->p += 4;
	return v;
}

static uint64_t rd_u64(struct reader *r)
{
	uint64_t v;
	if (r->end - r->p < 8) {
		errno = 0;
		fail("plan truncated");
	}
	memcpy(&v, r->p, 8);
	r->p += 8;
	return v;
}

// rd_str returns a NUL-terminated string of the plan (u32 length, bytes, NUL).
static const char *rd_str(struct reader *r)
{
	uint32_t n = rd_u32(r);
	if ((size_t)(r->end - r->p) < (size_t)n + 1 || r->p[n] != 0) {
		errno = 0;
		fail("plan has a malformed string");
	}
	const char *s = (const char *)r->p;
	r->p += n + 1;
	return s;
}

static const void *rd_bytes(struct reader *r, size_t n)
{
	if ((size_t)(r->end - r->p) < n) {
		errno = 0;
		fail("plan truncated");
	}
	const void *p = r->p;
	r->p += n;
	return p;
}

static const char *procfd(int fd, char *buf, size_t n)
{
	snprintf(buf, n, "/proc/self/fd/%d", fd);
	return buf;
}

// open_in_root opens path (relative to the container root) with every
// symlink resolved inside the root, as libpathrs does for libcontainer.
static int open_in_root(const char *path, int flags)
{
	struct wp_open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = WP_RESOLVE_IN_ROOT | WP_RESOLVE_NO_MAGICLINKS,
	};
	while (*path == '/')
		path++;
	if (*path == 0)
		path = ".";
	return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
}

// open_beneath opens name, a single component, in dir without following a
// symlink: for an entry just created there.
static int open_beneath(int dir, const char *name, int flags)
{
	struct wp_open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = WP_RESOLVE_BENEATH | WP_RESOLVE_NO_SYMLINKS | WP_RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, dir, name, &how, sizeof(how));
}

// mkdir_in_root makes the last component of buf (a path inside the root
// whose parent exists) a directory and returns an O_PATH descriptor of it.
static int mkdir_in_root(char *buf, mode_t mode)
{
	char *name = strrchr(buf, '/');
	int parent;
	if (name) {
		*name = 0;
		parent = open_in_root(buf, O_PATH | O_DIRECTORY);
		*name = '/';
		name++;
	} else {
		parent = open_in_root(".", O_PATH | O_DIRECTORY);
		name = buf;
	}
	if (parent < 0)
		return -1;
	int fd;
	if (mkdirat(parent, name, mode) == 0) {
		// Ours: no symlink can be there.
		fd = open_beneath(parent, name, O_PATH | O_DIRECTORY);
	} else if (errno == EEXIST) {
		// Whatever is there now is resolved inside the root.
		fd = open_in_root(buf, O_PATH | O_DIRECTORY);
	} else {
		fd = -1;
	}
	int e = errno;
	close(parent);
	errno = e;
	return fd;
}

// dangling_link tells whether the last component of buf (a path inside the
// root) is a symlink and, if so, writes to out the path it stands for: its
// target (inside the root, however absolute), then rest when not NULL.
static int dangling_link(char *buf, const char *rest, char *out, size_t n)
{
	char *name = strrchr(buf, '/');
	int parent;
	if (name) {
		*name = 0;
		parent = open_in_root(buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
		*name = '/';
		name++;
	} else {
		parent = open_in_root(".", O_PATH | O_DIRECTORY);
		name = buf;
	}
	if (parent < 0)
		return 0;
	struct stat st;
	char target[PATH_MAX];
	ssize_t r = -1;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		r = readlinkat(parent, name, target, sizeof(target) - 1);
	close(parent);
	if (r <= 0)
		return 0;
	target[r] = 0;
	int len;
	// A relative target is relative to the link's directory; the kernel
	// resolves the ".." in it (inside the root) when the result is opened.
	if (target[0] == '/')
		len = snprintf(out, n, "%s", target);
	else
		len = snprintf(out, n, "%.*s/%s", (int)(name - buf), buf, target);
	if (len >= 0 && (size_t)len < n && rest)
		len += snprintf(out + len, n - (size_t)len, "/%s", rest);
	if (len < 0 || (size_t)len >= n) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 1;
}

// mkdir_all_links is mkdir_all_in_root after links symlinks followed.
static int mkdir_all_links(const char *path, mode_t mode, int links);

// mkdir_all_in_root creates path and its missing parents inside the root
// and returns an O_PATH descriptor of it. Symlinks met on the way are
// resolved inside the root, as libpathrs does for libcontainer, dangling
// ones too: the directories are made where their target points, inside the
// root.
static int mkdir_all_in_root(const char *path, mode_t mode)
{
	return mkdir_all_links(path, mode, 0);
}

static int mkdir_all_links(const char *path, mode_t mode, int links)
{
	int fd = open_in_root(path, O_PATH | O_DIRECTORY);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	char buf[PATH_MAX];
	if (strlen(path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	// Mostly only the last component is missing.
	fd = mkdir_in_root(buf, mode);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	// Walk down from the root, making each missing component.
	char *p = buf;
	while (*p == '/')
		p++;
	for (;;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = 0;
		fd = open_in_root(buf, O_PATH | O_DIRECTORY);
		if (fd < 0 && errno == ENOENT) {
			// A symlink whose target is missing: make the target.
			char next[PATH_MAX];
			int l = dangling_link(buf, slash ? slash + 1 : NULL, next, sizeof(next));
			if (l < 0)
				return -1;
			if (l > 0) {
				if (links >= 40) {
					errno = ELOOP;
					return -1;
				}
				return mkdir_all_links(next, mode, links + 1);
			}
			fd = mkdir_in_root(buf, mode);
		}
		if (fd < 0)
			return -1;
		if (!slash)
			return fd;
		close(fd);
		*slash = '/';
		p = slash + 1;
		while (*p == '/')
			p++;
		if (*p == 0)
			return open_in_root(buf, O_PATH | O_DIRECTORY);
	}
}

// parent_in_root creates the parent dirs of path inside the root and returns
// a descriptor of the parent and, in *name, the last component.
static int parent_in_root(const char *path, char *buf, size_t n, const char **name)
{
	if (strlen(path) >= n) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	char *slash = strrchr(buf, '/');
	if (!slash) {
		*name = buf;
		return open_in_root(".", O_PATH | O_DIRECTORY);
	}
	*slash = 0;
	*name = slash + 1;
	return mkdir_all_in_root(buf[0] ? buf : "/", 0755);
}

// fd_path returns where fd points, as the kernel sees it.
static void fd_path(int fd, char *buf, size_t n)
{
	char p[64];
	ssize_t r = readlink(procfd(fd, p, sizeof(p)), buf, n - 1);
	if (r < 0)
		fail("readlink %s", p);
	buf[r] = 0;
}

// in_proc_allowed tells whether a mount at path (a host path inside the
// rootfs) is allowed by libcontainer's checkProcMount rules.
static int proc_mount_allowed(const char *real, int kind, const char *src, const char *fstype)
{
	static const char *valid[] = {
		"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
		"/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
		"/proc/sys/kernel/ns_last_pid", "/proc/sys/crypto/fips_enabled", NULL,
	};
	size_t rl = strlen(rootfs);
	const char *rel = real + rl;
	if (strncmp(rel, "/proc", 5) != 0 || (rel[5] != 0 && rel[5] != '/'))
		return 1;
	if (rel[5] == 0) {
		if (kind == MK_BIND) {
			struct statfs st;
			if (statfs(src, &st) < 0)
				fail("statfs %s", src);
			return st.f_type == 0x9fa0; // PROC_SUPER_MAGIC
		}
		// A fresh procfs is always safe on top of /proc.
		return strcmp(fstype, "proc") == 0;
	}
	for (int i = 0; valid[i]; i++)
		if (strcmp(rel, valid[i]) == 0)
			return 1;
	return 0;
}

#define MNT_LOCK_FLAGS (MS_RDONLY | MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME)
#define MNT_ATIME_FLAGS (MS_NOATIME | MS_RELATIME | MS_STRICTATIME)

static unsigned long statfs_mount_flags(const struct statfs *st)
{
	static const struct {
		unsigned long st, ms;
	} m[] = {
		{ST_RDONLY, MS_RDONLY}, {ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV},
		{ST_NOEXEC, MS_NOEXEC}, {ST_MANDLOCK, MS_MANDLOCK}, {ST_SYNCHRONOUS, MS_SYNCHRONOUS},
		{ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
		{0x2000, MS_NOSYMFOLLOW},
	};
	unsigned long flags = 0;
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if ((st->f_flags & m[i].st) == m[i].st)
			flags |= m[i].ms;
	if ((flags & (MS_NOATIME | MS_RELATIME)) == 0)
		flags |= MS_STRICTATIME;
	return flags;
}

static int is_devnull(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(1, 3);
}

// op_mount mounts one entry of the container's mount list, the way
// libcontainer's mountToRootfs does for its kind.
static void op_mount(struct reader *r)
{
	uint32_t kind = rd_u32(r), flags = rd_u32(r), cleared = rd_u32(r), nprop = rd_u32(r);
	if (nprop > 8)
		fail("plan: too many propagation flags");
	uint32_t props[8];
	for (uint32_t i = 0; i < nprop; i++)
		props[i] = rd_u32(r);
	const char *src = rd_str(r), *dst = rd_str(r), *fstype = rd_str(r), *data = rd_str(r);
	char pbuf[64], real[PATH_MAX], dbuf[4096];
	int fd;

	if (kind == MK_PROCSYS) {
		char nb[PATH_MAX];
		const char *name;
		int parent = parent_in_root(dst, nb, sizeof(nb), &name);
		if (parent < 0)
			fail("mkdir parent of %s", dst);
		struct stat st;
		if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
			errno = 0;
			fail("filesystem \"%s\" must be mounted on ordinary directory", fstype);
		}
		close(parent);
		fd = mkdir_all_in_root(dst, 0755);
		if (fd < 0)
			fail("mkdir %s", dst);
		fd_path(fd, real, sizeof(real));
		if (!proc_mount_allowed(real, kind, src, fstype)) {
			errno = 0;
			fail("%s cannot be mounted because it is inside /proc", dst);
		}
	} else {
		fd = open_in_root(dst, O_PATH);
		if (fd >= 0 && strcmp(fstype, "tmpfs") == 0) {
			struct stat st;
			if (fstat(fd, &st) < 0)
				fail("check tmpfs source mode");
			if (data[0])
				snprintf(dbuf, sizeof(dbuf), "mode=%04o,%s", st.st_mode & 07777, data);
			else
				snprintf(dbuf, sizeof(dbuf), "mode=%04o", st.st_mode & 07777);
			data = dbuf;
		}
		if (fd < 0) {
			if (errno != ENOENT)
				fail("lookup mountpoint target %s", dst);
			int file = 0;
			if (kind == MK_BIND) {
				struct stat st;
				if (stat(src, &st) < 0)
					fail("stat %s", src);
				file = !S_ISDIR(st.st_mode);
			}
			if (file) {
				char nb[PATH_MAX];
				const char *name;
				int parent = parent_in_root(dst, nb, sizeof(nb), &name);
				if (parent < 0)
					fail("make mountpoint %s", dst);
				int c = openat(parent, name, O_CREAT | O_EXCL | O_NOFOLLOW | O_RDONLY | O_CLOEXEC, 0644);
				if (c < 0)
					fail("make mountpoint %s", dst);
				close(c);
				// Ours (O_EXCL): no symlink can be there.
				fd = open_beneath(parent, name, O_PATH);
				close(parent);
			} else {
				fd = mkdir_all_in_root(dst, 0755);
			}
			if (fd < 0)
				fail("make mountpoint %s", dst);
		}
		fd_path(fd, real, sizeof(real));
		size_t rl = strlen(rootfs);
		if (strncmp(real, rootfs, rl) != 0 || (real[rl] != '/' && real[rl] != 0)) {
			errno = 0;
			fail("mountpoint %s is outside of rootfs %s", real, rootfs);
		}
		if (real[rl] == 0 || strcmp(real + rl, "/") == 0) {
			errno = 0;
			fail("mountpoint %s is on the top of rootfs %s", real, rootfs);
		}
		if (!proc_mount_allowed(real, kind, src, fstype)) {
			errno = 0;
			fail("%s cannot be mounted because it is inside /proc", dst);
		}
	}

	unsigned long mflags = flags;
	if (strcmp(fstype, "tmpfs") == 0 || strcmp(dst, "/dev") == 0)
		mflags &= ~(unsigned long)MS_RDONLY;
	if (kind == MK_CGROUP2) {
		if (mount(src, procfd(fd, pbuf, sizeof(pbuf)), "cgroup2", flags, data[0] ? data : NULL) < 0)
			fail("mount cgroup2 on %s", dst);
	} else if (mount(src, procfd(fd, pbuf, sizeof(pbuf)), fstype[0] ? fstype : NULL, mflags, data[0] ? data : NULL) < 0) {
		fail("mount %s on %s", src, dst);
	}
	close(fd);
	// Reopen: the descriptor names what was under the new mount.
	fd = open_in_root(dst, O_PATH);
	if (fd < 0)
		fail("reopen mountpoint %s", dst);
	procfd(fd, pbuf, sizeof(pbuf));
	for (uint32_t i = 0; i < nprop; i++)
		if (mount("", pbuf, NULL, props[i], NULL) < 0)
			fail("change mount propagation of %s", dst);
	if (kind == MK_BIND &&
	    ((flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT)) != 0 || cleared != 0)) {
		unsigned long f = flags | MS_BIND | MS_REMOUNT;
		if (mount("", pbuf, NULL, f, NULL) < 0) {
			int merr = errno;
			struct statfs st;
			if (statfs(src, &st) < 0)
				fail("statfs %s", src);
			unsigned long sf = statfs_mount_flags(&st);
			if (sf & cleared & MNT_LOCK_FLAGS) {
				errno = merr;
				fail("cannot clear locked flags of %s", dst);
			}
			if ((flags & MNT_ATIME_FLAGS) != 0 && (flags & MNT_ATIME_FLAGS) != (sf & MNT_ATIME_FLAGS)) {
				errno = merr;
				fail("cannot change locked atime flags of %s", dst);
			}
			f |= sf & MNT_LOCK_FLAGS;
			if (mount("", pbuf, NULL, f, NULL) < 0)
				fail("remount %s with locked flags re-applied", dst);
		}
	}
	close(fd);
}

static void op_mknod(struct reader *r)
{
	uint32_t mode = rd_u32(r), maj = rd_u32(r), min = rd_u32(r), uid = rd_u32(r), gid = rd_u32(r);
	const char *path = rd_str(r);
	char nb[PATH_MAX], pbuf[64];
	const char *name;
	int dir = parent_in_root(path, nb, sizeof(nb), &name);
	if (dir < 0)
		fail("mkdir parent of device inode %s", path);
	dev_t dev = makedev(maj, min);
	if (mknodat(dir, name, mode, dev) < 0) {
		if (errno == EEXIST) {
			close(dir);
			return;
		}
		if (errno != EPERM)
			fail("mknodat %s", path);
		// Not allowed to make device nodes here: bind the host's.
		int f = openat(dir, name, O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_RDONLY, 0);
		if (f < 0)
			fail("create device inode %s", path);
		if (mount(path, procfd(f, pbuf, sizeof(pbuf)), "bind", MS_BIND, NULL) < 0)
			fail("bind device %s", path);
		close(f);
		close(dir);
		return;
	}
	int f = openat(dir, name, O_NOFOLLOW | O_PATH | O_CLOEXEC);
	if (f < 0)
		fail("open new device inode %s", path);
	struct stat st;
	if (fstat(f, &st) < 0)
		fail("stat device inode %s", path);
	if ((st.st_mode & S_IFMT) != (mode & S_IFMT) || st.st_rdev != dev) {
		errno = 0;
		fail("new device inode %s has the wrong type or number", path);
	}
	procfd(f, pbuf, sizeof(pbuf));
	if (chmod(pbuf, mode & 07777) < 0)
		fail("chmod device inode %s", path);
	if (fchownat(f, "", uid, gid, AT_EMPTY_PATH) < 0)
		fail("chown device inode %s", path);
	close(f);
	close(dir);
}

static void symlink_in_root(const char *target, const char *link)
{
	char nb[PATH_MAX];
	const char *name;
	int dir = parent_in_root(link, nb, sizeof(nb), &name);
	if (dir < 0)
		fail("mkdir parent of %s", link);
	if (symlinkat(target, dir, name) < 0 && errno != EEXIST)
		fail("symlink %s", link);
	close(dir);
}

static void op_prepare_root(uint32_t prop)
{
	unsigned long flags = prop ? prop : (MS_SLAVE | MS_REC);
	if (mount("", "/", NULL, flags, NULL) < 0)
		fail("make / %s", prop ? "propagate as asked" : "rslave");
	// The rootfs's parent mount must not be shared (pivot_root refuses it,
	// and the bind below would leak to the host).
	unsigned long pflags = (prop & MS_SLAVE) ? MS_SLAVE : MS_PRIVATE;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s", rootfs);
	for (;;) {
		if (mount("", path, NULL, pflags, NULL) == 0)
			break;
		if (errno != EINVAL || strcmp(path, "/") == 0)
			fail("remount-propagation %s", path);
		char *s = strrchr(path, '/');
		if (s == path)
			s[1] = 0;
		else
			*s = 0;
	}
	if (mount(rootfs, rootfs, "bind", MS_BIND | MS_REC, NULL) < 0)
		fail("bind rootfs");
	root_fd = open(rootfs, O_DIRECTORY | O_CLOEXEC | O_PATH);
	if (root_fd < 0)
		fail("open rootfs");
}

static void op_pivot(void)
{
	int old = open("/", O_DIRECTORY | O_RDONLY | O_PATH | O_CLOEXEC);
	if (old < 0)
		fail("open /");
	if (fchdir(root_fd) < 0)
		fail("chdir rootfs");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root");
	if (fchdir(old) < 0)
		fail("fchdir old root");
	if (mount("", ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		fail("make old root rslave");
	if (umount2(".", MNT_DETACH) < 0)
		fail("unmount old root");
	if (chdir("/") < 0)
		fail("chdir /");
	close(old);
	close(root_fd);
	root_fd = -1;
}

static void op_reopen_devnull(void)
{
	int f = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (f < 0)
		fail("open /dev/null");
	struct stat st;
	if (fstat(f, &st) < 0 || !is_devnull(&st)) {
		errno = 0;
		fail("container's /dev/null is invalid");
	}
	for (int i = 0; i < 3; i++) {
		if (fstat(i, &st) < 0)
			fail("fstat fd %d", i);
		if (is_devnull(&st) && dup3(f, i, 0) < 0)
			fail("reopen fd %d on /dev/null", i);
	}
	close(f);
}

static void mkdir_all(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (strlen(path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		fail("mkdir %s", path);
	}
	strcpy(buf, path);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				fail("mkdir %s", buf);
			if (errno == EEXIST) {
				struct stat st;
				if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
					errno = ENOTDIR;
					fail("mkdir %s", buf);
				}
			}
			errno = 0;
			*p = c;
			if (c == 0)
				break;
		}
	}
}

static void op_readonly_path(const char *path)
{
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == ENOENT)
			return;
		fail("can't make %s read-only", path);
	}
	struct statfs st;
	if (statfs(path, &st) < 0)
		fail("statfs %s", path);
	unsigned long flags = st.f_flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
	if (mount(path, path, NULL, flags | MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
		fail("can't make %s read-only", path);
}

// op_mask_paths hides paths: files under /dev/null, directories under a
// read-only tmpfs (one, bind-mounted on each further directory).
static void op_mask_paths(struct reader *r)
{
	uint32_t n = rd_u32(r);
	char sbuf[64], dbuf[64];
	int devnull = -1, shared = -1, bind_failed = 0;
	const char **seen = calloc(n ? n : 1, sizeof(char *));
	uint32_t nseen = 0;
	for (uint32_t i = 0; i < n; i++) {
		const char *path = rd_str(r);
		if (devnull < 0) {
			devnull = open("/dev/null", O_PATH | O_CLOEXEC);
			struct stat st;
			if (devnull < 0 || fstat(devnull, &st) < 0 || !is_devnull(&st)) {
				errno = 0;
				fail("can't mask paths: invalid /dev/null");
			}
		}
		int dst = open(path, O_PATH | O_CLOEXEC);
		if (dst < 0) {
			if (errno == ENOENT)
				continue;
			fail("can't mask path %s", path);
		}
		struct stat st;
		if (fstat(dst, &st) < 0)
			fail("can't mask path %s", path);
		int dup = 0;
		for (uint32_t j = 0; j < nseen; j++)
			if (strcmp(seen[j], path) == 0)
				dup = 1;
		if (dup) {
			close(dst);
			continue;
		}
		seen[nseen++] = path;
		if (S_ISDIR(st.st_mode)) {
			if (shared >= 0 && !bind_failed &&
			    mount(procfd(shared, sbuf, sizeof(sbuf)), procfd(dst, dbuf, sizeof(dbuf)), NULL, MS_BIND, NULL) < 0)
				bind_failed = 1;
			if (shared < 0 || bind_failed) {
				if (mount("tmpfs", path, "tmpfs", MS_RDONLY, "nr_blocks=1,nr_inodes=1") < 0 &&
				    mount("tmpfs", path, "tmpfs", MS_RDONLY, "nr_blocks=1,nr_inodes=2") < 0)
					fail("can't mask dir %s", path);
				if (shared < 0 && !bind_failed) {
					// The first mask is the source of the others.
					shared = open(path, O_PATH | O_CLOEXEC);
					if (shared < 0)
						fail("can't reopen shared directory mask");
				}
			}
		} else if (mount(procfd(devnull, sbuf, sizeof(sbuf)), procfd(dst, dbuf, sizeof(dbuf)), NULL, MS_BIND, NULL) < 0) {
			fail("can't mask path %s", path);
		}
		close(dst);
	}
	if (devnull >= 0)
		close(devnull);
	if (shared >= 0)
		close(shared);
	free(seen);
}

static void op_keyring(const char *name, uint32_t mask, uint32_t setbits)
{
	long id = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name);
	if (id < 0) {
		if (errno == ENOSYS)
			return;
		fail("unable to join session keyring");
	}
	char desc[512];
	long n = syscall(SYS_keyctl, KEYCTL_DESCRIBE, id, desc, sizeof(desc) - 1);
	if (n < 0)
		fail("describe session keyring");
	desc[n < (long)sizeof(desc) ? n : (long)sizeof(desc) - 1] = 0;
	// "type;uid;gid;perm;description"
	char *f = desc;
	for (int i = 0; i < 3 && f; i++) {
		f = strchr(f, ';');
		if (f)
			f++;
	}
	if (!f) {
		errno = 0;
		fail("unexpected keyring description %s", desc);
	}
	uint32_t perm = (uint32_t)strtoul(f, NULL, 16);
	perm = (perm & mask) | setbits;
	if (syscall(SYS_keyctl, KEYCTL_SETPERM, id, perm) < 0)
		fail("unable to mod keyring permissions");
}

static void op_seccomp(struct reader *r)
{
	uint32_t flags = rd_u32(r), len = rd_u32(r);
	const struct sock_filter *f = rd_bytes(r, (size_t)len * sizeof(struct sock_filter));
	struct sock_filter *copy = malloc((size_t)len * sizeof(*copy));
	if (!copy)
		fail("allocate seccomp filter");
	memcpy(copy, f, (size_t)len * sizeof(*copy));
	struct sock_fprog prog = {.len = (unsigned short)len, .filter = copy};
	if (flags == 0) {
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
			fail("load seccomp filter");
	} else if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) < 0) {
		fail("load seccomp filter");
	}
}

static void op_capset(uint64_t eff, uint64_t perm, uint64_t inh)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2] = {
		{.effective = (uint32_t)eff, .permitted = (uint32_t)perm, .inheritable = (uint32_t)inh},
		{.effective = (uint32_t)(eff >> 32), .permitted = (uint32_t)(perm >> 32), .inheritable = (uint32_t)(inh >> 32)},
	};
	if (syscall(SYS_capset, &h, d) < 0)
		fail("can't apply capabilities");
}

// op_home_env finds uid's home in the container's /etc/passwd, "/" when it
// has none, as libcontainer does for a process without HOME.
static void op_home_env(uint32_t uid)
{
	static char env[PATH_MAX + 8];
	const char *home = "/";
	char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen("/etc/passwd", "re");
	if (f) {
		while (getline(&line, &cap, f) > 0) {
			char *fields[7] = {0};
			char *s = line;
			size_t l = strlen(s);
			while (l > 0 && (s[l - 1] == '\n' || s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r'))
				s[--l] = 0;
			while (*s == ' ' || *s == '\t')
				s++;
			if (*s == 0)
				continue;
			int nf = 0;
			fields[nf++] = s;
			for (char *c = s; *c && nf < 7; c++)
				if (*c == ':') {
					*c = 0;
					fields[nf++] = c + 1;
				}
			if (nf < 3 || !fields[2][0])
				continue;
			char *end;
			errno = 0;
			unsigned long u = strtoul(fields[2], &end, 10);
			if (*end || errno)
				continue;
			if (u == uid) {
				home = nf > 5 ? fields[5] : "";
				break;
			}
		}
		fclose(f);
	}
	snprintf(env, sizeof(env), "HOME=%s", home);
	home_env = env;
	free(line);
}

// find_executable is Go's findExecutable: a non-directory the caller may
// execute.
static int find_executable(const char *file)
{
	struct stat st;
	if (stat(file, &st) < 0)
		return -1;
	if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		return -1;
	}
	if (faccessat(AT_FDCWD, file, X_OK, AT_EACCESS) == 0)
		return 0;
	if (errno != ENOSYS && errno != EPERM)
		return -1;
	if (st.st_mode & 0111)
		return 0;
	errno = EACCES;
	return -1;
}

// clean_join is filepath.Join(dir, file) for a clean file name.
static char *clean_join(const char *dir, const char *file)
{
	size_t n = strlen(dir) + strlen(file) + 2;
	char *out = malloc(n), *w = out;
	if (!out)
		fail("allocate path");
	snprintf(out, n, "%s/%s", dir, file);
	// Collapse "//" and "/./"; PATH entries are rarely more unclean than that.
	for (char *p = out; *p; p++) {
		if (p[0] == '/' && (p[1] == '/' || (p[1] == '.' && (p[2] == '/' || p[2] == 0))))
			continue;
		*w++ = *p;
	}
	*w = 0;
	if (w > out + 1 && w[-1] == '/')
		w[-1] = 0;
	if (strncmp(out, "./", 2) == 0)
		memmove(out, out + 2, strlen(out + 2) + 1);
	return out;
}

static void op_lookpath(const char *file, const char *path)
{
	if (strchr(file, '/')) {
		if (find_executable(file) < 0)
			fail("exec: \"%s\"", file);
		exec_path = file;
		return;
	}
	const char *p = path;
	while (p) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		char dir[PATH_MAX];
		if (n >= sizeof(dir))
			n = sizeof(dir) - 1;
		memcpy(dir, p, n);
		dir[n] = 0;
		if (n == 0)
			strcpy(dir, ".");
		char *full = clean_join(dir, file);
		if (find_executable(full) == 0) {
			if (full[0] != '/') {
				errno = 0;
				fail("exec: \"%s\": cannot run executable found relative to current directory", file);
			}
			exec_path = full;
			return;
		}
		free(full);
		p = colon ? colon + 1 : NULL;
	}
	errno = 0;
	fail("exec: \"%s\": executable file not found in $PATH", file);
}

static void op_ready(void)
{
	char msg[1 + sizeof(phases)];
	msg[0] = 'R';
	memcpy(msg + 1, phases, sizeof(phases));
	write_all(status_fd, msg, sizeof(msg));
	char c;
	ssize_t n;
	do {
		n = read(release_fd, &c, 1);
	} while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(0); // discarded before it was released
	close(release_fd);
}

static void op_exec(struct reader *r)
{
	uint32_t argc = rd_u32(r);
	if (argc == 0 || argc > 1 << 16)
		fail("plan: bad argument count");
	char **argv = calloc(argc + 1, sizeof(char *));
	for (uint32_t i = 0; i < argc; i++)
		argv[i] = (char *)rd_str(r);
	uint32_t envc = rd_u32(r);
	if (envc > 1 << 16)
		fail("plan: bad environment size");
	char **envp = calloc(envc + 2, sizeof(char *));
	uint32_t e = 0;
	for (uint32_t i = 0; i < envc; i++)
		envp[e++] = (char *)rd_str(r);
	if (home_env)
		envp[e++] = (char *)home_env;
	if (!exec_path)
		fail("plan: exec without a path");
	// Descriptors beyond stdio are the spawner's: none reaches the command.
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = 3; fd < 1024; fd++)
			if (fd != status_fd)
				fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	execve(exec_path, argv, envp);
	fail("exec %s", exec_path);
}

static void child_run(const uint8_t *plan, size_t len)
{
	struct reader r = {plan, plan + len};
	int nphase = 0;
	for (;;) {
		uint32_t op = rd_u32(&r);
		switch (op) {
		case OP_END:
			errno = 0;
			fail("plan ended without exec");
		case OP_PHASE: {
			uint32_t id = rd_u32(&r);
			if (id < MAX_PHASES)
				phases[id] = now_ns();
			nphase++;
			break;
		}
		case OP_SCHED_IDLE: {
			struct sched_param sp = {0};
			sched_setscheduler(0, SCHED_IDLE, &sp);
			break;
		}
		case OP_CGROUP_JOIN: {
			const char *dir = rd_str(&r);
			char p[PATH_MAX];
			snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
			int fd = open(p, O_WRONLY | O_CLOEXEC);
			if (fd < 0)
				fail("open %s", p);
			int ok = 0;
			for (int i = 0; i < 5 && !ok; i++) {
				ok = write(fd, "0", 1) == 1;
				if (!ok && errno != EINVAL)
					break;
			}
			if (!ok)
				fail("join cgroup %s", dir);
			close(fd);
			break;
		}
		case OP_OOM_SCORE: {
			const char *v = rd_str(&r);
			int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
			if (fd < 0 || write(fd, v, strlen(v)) < 0)
				fail("failed to update /proc/self/oom_score_adj");
			close(fd);
			break;
		}
		case OP_NONDUMPABLE:
			if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
				fail("set non-dumpable");
			break;
		case OP_SETNS: {
			uint32_t type = rd_u32(&r);
			const char *path = rd_str(&r);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				fail("open namespace %s", path);
			if (setns(fd, (int)type) < 0)
				fail("join namespace %s", path);
			close(fd);
			break;
		}
		case OP_UNSHARE:
			if (unshare((int)rd_u32(&r)) < 0)
				fail("unshare");
			break;
		case OP_SETSID:
			if (setsid() < 0)
				fail("setsid");
			break;
		case OP_KEYRING: {
			const char *name = rd_str(&r);
			uint32_t mask = rd_u32(&r), set = rd_u32(&r);
			op_keyring(name, mask, set);
			break;
		}
		case OP_PREPARE_ROOT:
			op_prepare_root(rd_u32(&r));
			break;
		case OP_MOUNT:
			op_mount(&r);
			break;
		case OP_MKNOD:
			op_mknod(&r);
			break;
		case OP_PTMX: {
			char nb[PATH_MAX];
			const char *name;
			int dir = parent_in_root("/dev/ptmx", nb, sizeof(nb), &name);
			if (dir < 0)
				fail("open /dev");
			if (unlinkat(dir, name, 0) < 0 && errno != ENOENT)
				fail("remove /dev/ptmx");
			close(dir);
			symlink_in_root("pts/ptmx", "/dev/ptmx");
			break;
		}
		case OP_SYMLINK: {
			const char *target = rd_str(&r), *link = rd_str(&r);
			symlink_in_root(target, link);
			break;
		}
		case OP_PIVOT:
			op_pivot();
			break;
		case OP_ROOT_PROPAGATE:
			if (mount("", "/", NULL, rd_u32(&r), NULL) < 0)
				fail("unable to apply root propagation flags");
			break;
		case OP_REOPEN_DEVNULL:
			op_reopen_devnull();
			break;
		case OP_MKDIR_CWD:
			mkdir_all(rd_str(&r), 0755);
			break;
		case OP_REMOUNT_RO: {
			uint32_t flags = rd_u32(&r);
			const char *dst = rd_str(&r);
			if (mount("", dst, NULL, flags | MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
				fail("remount %s read-only", dst);
			break;
		}
		case OP_ROOT_RO: {
			unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY;
			if (mount("", "/", NULL, flags, NULL) < 0) {
				struct statfs st;
				if (statfs("/", &st) < 0)
					fail("statfs /");
				if (mount("", "/", NULL, flags | st.f_flags, NULL) < 0)
					fail("error setting rootfs as readonly");
			}
			break;
		}
		case OP_UMASK:
			umask(rd_u32(&r));
			break;
		case OP_HOSTNAME: {
			const char *h = rd_str(&r);
			if (sethostname(h, strlen(h)) < 0)
				fail("sethostname");
			break;
		}
		case OP_DOMAINNAME: {
			const char *d = rd_str(&r);
			if (setdomainname(d, strlen(d)) < 0)
				fail("setdomainname");
			break;
		}
		case OP_SYSCTL: {
			const char *k = rd_str(&r), *v = rd_str(&r);
			char p[PATH_MAX];
			snprintf(p, sizeof(p), "/proc/sys/%s", k);
			for (char *c = p + 10; *c; c++)
				if (*c == '.')
					*c = '/';
			int fd = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
			if (fd < 0 || write(fd, v, strlen(v)) < 0)
				fail("write sysctl %s", k);
			close(fd);
			break;
		}
		case OP_READONLY_PATH:
			op_readonly_path(rd_str(&r));
			break;
		case OP_MASK_PATHS:
			op_mask_paths(&r);
			break;
		case OP_NNP:
			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
				fail("prctl(SET_NO_NEW_PRIVS)");
			break;
		case OP_RLIMIT: {
			uint32_t res = rd_u32(&r);
			struct rlimit rl;
			rl.rlim_cur = rd_u64(&r);
			rl.rlim_max = rd_u64(&r);
			if (setrlimit((int)res, &rl) < 0)
				fail("error setting rlimit type %u", res);
			break;
		}
		case OP_SECCOMP:
			op_seccomp(&r);
			break;
		case OP_CHDIR_TRY: {
			const char *cwd = rd_str(&r);
			if (chdir(cwd) == 0)
				cwd_done = 1;
			else if (errno != EACCES && errno != EPERM)
				fail("chdir to cwd (%s) set in config.json failed", cwd);
			break;
		}
		case OP_CAPBSET: {
			uint64_t keep = rd_u64(&r);
			uint32_t last = rd_u32(&r);
			for (uint32_t c = 0; c <= last && c < 64; c++)
				if (!(keep & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
					fail("unable to apply bounding set");
			break;
		}
		case OP_KEEPCAPS:
			if (prctl(PR_SET_KEEPCAPS, rd_u32(&r), 0, 0, 0) < 0)
				fail("keep caps");
			break;
		case OP_FIX_STDIO: {
			uint32_t uid = rd_u32(&r);
			for (int i = 0; i < 3; i++) {
				struct stat st;
				if (fstat(i, &st) < 0)
					fail("fstat fd %d", i);
				if (st.st_uid == uid || is_devnull(&st))
					continue;
				if (fchown(i, uid, (gid_t)-1) < 0 && errno != EPERM && errno != EROFS)
					fail("chown fd %d", i);
			}
			break;
		}
		case OP_SETGROUPS: {
			uint32_t n = rd_u32(&r);
			if (n > 65536)
				fail("plan: too many groups");
			gid_t *g = calloc(n ? n : 1, sizeof(gid_t));
			for (uint32_t i = 0; i < n; i++)
				g[i] = rd_u32(&r);
			if (syscall(SYS_setgroups, (size_t)n, g) < 0)
				fail("setgroups");
			free(g);
			break;
		}
		case OP_SETGID:
			if (syscall(SYS_setgid, rd_u32(&r)) < 0)
				fail("setgid");
			break;
		case OP_SETUID:
			if (syscall(SYS_setuid, rd_u32(&r)) < 0)
				fail("setuid");
			break;
		case OP_CHDIR_LATE: {
			const char *cwd = rd_str(&r);
			if (!cwd_done && chdir(cwd) < 0)
				fail("chdir to cwd (%s) set in config.json failed", cwd);
			break;
		}
		case OP_VERIFY_CWD: {
			char wd[PATH_MAX];
			if (syscall(SYS_getcwd, wd, sizeof(wd)) < 0) {
				if (errno == ENOENT) {
					errno = 0;
					fail("current working directory is outside of container mount namespace root -- possible container breakout detected");
				}
				fail("failed to verify if current working directory is safe");
			}
			if (wd[0] != '/') {
				errno = 0;
				fail("current working directory is not absolute -- possible container breakout detected");
			}
			break;
		}
		case OP_CAPSET: {
			uint64_t e = rd_u64(&r), p = rd_u64(&r), i = rd_u64(&r);
			op_capset(e, p, i);
			break;
		}
		case OP_AMBIENT: {
			uint64_t mask = rd_u64(&r);
			if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
				fail("reset ambient capabilities");
			for (int c = 0; c < 64; c++)
				if (mask & (1ULL << c))
					prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
			break;
		}
		case OP_HOME_ENV:
			op_home_env(rd_u32(&r));
			break;
		case OP_LOOKPATH: {
			const char *file = rd_str(&r), *path = rd_str(&r);
			op_lookpath(file, path);
			break;
		}
		case OP_READY:
			op_ready();
			break;
		case OP_EXEC:
			op_exec(&r);
			break;
		default:
			errno = 0;
			fail("plan: unknown operation %u", op);
		}
	}
}

// child_start moves the request's descriptors into place: stdio on 0-2, the
// status and release pipes above them, everything else closed.
static void child_start(const struct req *q, int *fds, int nfds)
{
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);

	// The name the init goes by until it execs (the server's is
	// "warmpod-spawner").
	prctl(PR_SET_NAME, (unsigned long)"warmpod:init", 0, 0, 0);

	int hi[6];
	int want[6] = {q->fd_stdin, q->fd_stdout, q->fd_stderr, q->fd_status, q->fd_release, q->fd_cgroup};
	for (int i = 0; i < 6; i++) {
		hi[i] = -1;
		if (want[i] >= 0 && want[i] < nfds) {
			hi[i] = fcntl(fds[want[i]], F_DUPFD_CLOEXEC, 100);
			if (hi[i] < 0)
				_exit(2);
		}
	}
	status_fd = hi[3];
	release_fd = hi[4];
	if (status_fd < 0 || release_fd < 0)
		_exit(2);
	for (int i = 0; i < 3; i++) {
		if (hi[i] < 0) {
			errno = 0;
			fail("stdio descriptor %d missing", i);
		}
		if (dup3(hi[i], i, 0) < 0)
			fail("dup stdio");
	}
	// Close every descriptor but stdio, status and release.
	int lo = 3;
	int keep[2] = {status_fd < release_fd ? status_fd : release_fd, status_fd < release_fd ? release_fd : status_fd};
	for (int k = 0; k < 2; k++) {
		if (keep[k] > lo && syscall(SYS_close_range, lo, keep[k] - 1, 0) < 0)
			for (int fd = lo; fd < keep[k]; fd++)
				close(fd);
		lo = keep[k] + 1;
	}
	if (syscall(SYS_close_range, lo, ~0U, 0) < 0)
		for (int fd = lo; fd < 4096; fd++)
			close(fd);
}

/* ---------------------------------------------------------------------- */
/* Fork server                                                            */

struct wp_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static void reply(int sock, int32_t pid, int err, const char *msg)
{
	struct resp r = {.pid = pid, .err = err};
	if (msg)
		snprintf(r.msg, sizeof(r.msg), "%s", msg);
	ssize_t n;
	do {
		n = send(sock, &r, sizeof(r), MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
}

// read_filter answers a REQ_FILTER: struct resp (pid: the number of
// instructions), the filter's flags (u64) and its instructions.
static void read_filter(int sock, pid_t tid)
{
	static struct {
		struct resp r;
		uint64_t flags;
		struct sock_filter prog[MAX_FILTER];
	} out;
	memset(&out.r, 0, sizeof(out.r));
	const char *what = NULL;
	if (ptrace(PTRACE_SEIZE, tid, 0, 0) < 0) {
		reply(sock, -1, errno, "seize");
		return;
	}
	int st;
	long n = -1;
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0) {
		what = "interrupt";
	} else if (waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st)) {
		what = "wait for the stop";
	} else if ((n = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, 0, NULL)) < 0) {
		what = "count filter";
	} else if (n > MAX_FILTER) {
		errno = E2BIG;
		what = "filter size";
	} else if (ptrace(PTRACE_SECCOMP_GET_FILTER, tid, 0, out.prog) != n) {
		what = "read filter";
	} else if (ptrace(PTRACE_SECCOMP_GET_FILTER, tid, 1, NULL) >= 0) {
		errno = E2BIG;
		what = "more than one filter";
	} else {
		struct seccomp_metadata md = {.filter_off = 0};
		if (ptrace(PTRACE_SECCOMP_GET_METADATA, tid, sizeof(md), &md) < 0)
			what = "read filter flags";
		out.flags = md.flags;
	}
	int e = errno;
	ptrace(PTRACE_DETACH, tid, 0, 0);
	if (what) {
		reply(sock, -1, e, what);
		return;
	}
	out.r.pid = (int32_t)n;
	size_t len = sizeof(out.r) + sizeof(out.flags) + (size_t)n * sizeof(struct sock_filter);
	ssize_t w;
	do {
		w = send(sock, &out, len, MSG_NOSIGNAL);
	} while (w < 0 && errno == EINTR);
}

static void serve_one(int sock, uint8_t *buf, ssize_t n, int *fds, int nfds, int own_pidns)
{
	struct req q;
	if ((size_t)n < sizeof(q)) {
		reply(sock, -1, EINVAL, "short request");
		return;
	}
	memcpy(&q, buf, sizeof(q));
	if (q.magic == REQ_MAGIC && q.kind == REQ_FILTER) {
		read_filter(sock, (pid_t)q.clone_flags);
		return;
	}
	size_t need = sizeof(q) + (size_t)q.rootfs_len + 1 + (size_t)q.pidns_len + 1 + q.plan_len;
	if (q.magic != REQ_MAGIC || q.len != (uint32_t)n || need > (size_t)n) {
		reply(sock, -1, EINVAL, "malformed request");
		return;
	}
	const char *root = (const char *)buf + sizeof(q);
	const char *pidns = root + q.rootfs_len + 1;
	const uint8_t *plan = (const uint8_t *)pidns + q.pidns_len + 1;
	if (root[q.rootfs_len] != 0 || pidns[q.pidns_len] != 0) {
		reply(sock, -1, EINVAL, "malformed request strings");
		return;
	}
	if (q.pidns_len > 0) {
		int nsfd = open(pidns, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0 || setns(nsfd, CLONE_NEWPID) < 0) {
			int e = errno;
			if (nsfd >= 0)
				close(nsfd);
			reply(sock, -1, e, "join pid namespace");
			return;
		}
		close(nsfd);
	}
	struct wp_clone_args ca = {0};
	ca.flags = q.clone_flags | CLONE_PARENT;
	if (q.fd_cgroup >= 0 && q.fd_cgroup < nfds) {
		ca.flags |= CLONE_INTO_CGROUP;
		ca.cgroup = (uint64_t)fds[q.fd_cgroup];
	}
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0) {
		rootfs = root;
		child_start(&q, fds, nfds);
		child_run(plan, q.plan_len);
		_exit(1);
	}
	int e = errno;
	if (q.pidns_len > 0 && setns(own_pidns, CLONE_NEWPID) < 0) {
		// The server could only make children in the wrong namespace now.
		reply(sock, -1, errno, "return to own pid namespace");
		_exit(3);
	}
	if (pid < 0)
		reply(sock, -1, e, "clone3");
	else
		reply(sock, (int32_t)pid, 0, NULL);
}

static void serve(int sock)
{
	uint8_t *buf = malloc(MAX_REQ);
	if (!buf)
		_exit(2);
	int own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	if (own_pidns < 0)
		_exit(2);
	for (;;) {
		char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct iovec iov = {.iov_base = buf, .iov_len = MAX_REQ};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0); // the shim is gone
		int fds[MAX_FDS], nfds = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k && nfds < MAX_FDS; i++)
				memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
		if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
			reply(sock, -1, EMSGSIZE, "request truncated");
		else
			serve_one(sock, buf, n, fds, nfds, own_pidns);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
}

// warmpod_spawner_main runs as a constructor: it returns at once unless the
// process was started as a fork server, which it then runs until the shim
// closes the socket.
void warmpod_spawner_main(void)
{
	const char *v = getenv("_WARMPOD_SPAWNER");
	if (!v)
		return;
	char *end;
	long fd = strtol(v, &end, 10);
	if (*end || fd < 3 || fd > 1024)
		_exit(2);
	unsetenv("_WARMPOD_SPAWNER");
	// Only stdio and the socket: a descriptor the shim inherited without
	// close-on-exec (a lock, say) must not live on in every container.
	if (fd > 3)
		syscall(SYS_close_range, 3, (unsigned)fd - 1, 0);
	syscall(SYS_close_range, (unsigned)fd + 1, ~0U, 0);
	prctl(PR_SET_NAME, (unsigned long)"warmpod-spawner", 0, 0, 0);
	// Children of the server are the shim's (CLONE_PARENT); none is ours.
	signal(SIGCHLD, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	serve((int)fd);
	_exit(0);
}
