package testimages

// The shell programs the critest look-alikes run in place of the upstream binaries. Each keeps exactly what
// the CRI validation suite observes of the program it stands in for; everything else is left out.

// pgrepScript stands in for procps' pgrep where the busybox was built without the applet: the suite runs
// `pgrep sleep` to check that a timed-out exec left no process behind.
const pgrepScript = `#!/bin/sh
# pgrep PATTERN: print the ids of the processes whose name matches the extended regular expression PATTERN;
# exit 1 when none does. (This busybox has no pgrep applet.)
if [ $# -ne 1 ]; then
	echo "usage: pgrep PATTERN" >&2
	exit 2
fi
self=$$
for dir in /proc/[0-9]*; do
	pid=${dir#/proc/}
	[ "$pid" = "$self" ] && continue
	read -r comm 2>/dev/null < "$dir/comm" || continue
	printf '%s\t%s\n' "$pid" "$comm"
done | awk -F '\t' -v pat="$1" 'BEGIN { status = 1 } $2 ~ pat { print $1; status = 0 } END { exit status }'
`

// ipcsScript stands in for util-linux's ipcs where the busybox was built without the applet: the suite runs
// `ipcs -m` to see whether a shared memory segment of the host is visible in a container.
const ipcsScript = `#!/bin/sh
# ipcs [-m] [-q] [-s] [-a]: list System V IPC objects from /proc/sysvipc in util-linux's layout.
# (This busybox has no ipcs applet.)
shm=; msg=; sem=
for arg in "$@"; do
	case $arg in
	-m) shm=1 ;;
	-q) msg=1 ;;
	-s) sem=1 ;;
	-a) shm=1; msg=1; sem=1 ;;
	*) echo "ipcs: unsupported option $arg" >&2; exit 1 ;;
	esac
done
[ -z "$shm$msg$sem" ] && { shm=1; msg=1; sem=1; }
if [ -n "$msg" ]; then
	printf '\n------ Message Queues --------\n%-10s %-10s %-10s %-10s %-12s %-12s\n' key msqid owner perms used-bytes messages
	awk 'NR > 1 { printf "0x%08x %-10s %-10s %-10s %-12s %-12s\n", $1, $2, $8, $3, $4, $5 }' /proc/sysvipc/msg
fi
if [ -n "$shm" ]; then
	printf '\n------ Shared Memory Segments --------\n%-10s %-10s %-10s %-10s %-10s %-10s\n' key shmid owner perms bytes nattch
	awk 'NR > 1 { printf "0x%08x %-10s %-10s %-10s %-10s %-10s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
fi
if [ -n "$sem" ]; then
	printf '\n------ Semaphore Arrays --------\n%-10s %-10s %-10s %-10s %-10s\n' key semid owner perms nsems
	awk 'NR > 1 { printf "0x%08x %-10s %-10s %-10s %-10s\n", $1, $2, $5, $3, $4 }' /proc/sysvipc/sem
fi
echo
`

// nginxEntrypoint starts the nginx look-alike. The suite looks for a master process whose command line
// holds "master process", for a pid file, and for processes named nginx (pidof nginx). /usr/sbin/nginx is
// busybox itself, so whatever it runs is named nginx; busybox picks the applet from the last path element
// of argv[0], which lets the master's title end in /bin/sh.
const nginxEntrypoint = `#!/bin/sh
# Look-alike of the nginx image's entrypoint: busybox httpd serves /usr/share/nginx/html on the port
# /etc/nginx/conf.d/default.conf listens on.
if [ "$1" != nginx ]; then
	exec "$@"
fi
exec -a "nginx: master process $* /bin/sh" /usr/sbin/nginx /usr/lib/nginx/master.sh
`

// nginxMaster is the master: it writes its pid file, runs one worker (the httpd applet, named nginx) and
// stops it on SIGTERM, SIGINT (fast shutdown) or SIGQUIT (graceful shutdown), as nginx does.
const nginxMaster = `# nginx look-alike master; see /docker-entrypoint.sh.
trap 'kill "$worker" 2>/dev/null; wait "$worker"; rm -f /var/run/nginx.pid; exit 0' TERM INT QUIT
port=$(sed -n 's/^[[:space:]]*listen[[:space:]]*\([0-9][0-9]*\).*/\1/p' /etc/nginx/conf.d/default.conf | head -n 1)
echo $$ > /var/run/nginx.pid
(exec -a httpd /usr/sbin/nginx -f -p "${port:-80}" -h /usr/share/nginx/html) &
worker=$!
wait "$worker"
`

const nginxIndex = `<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and working.</p>
</body>
</html>
`

// httpdForeground is the httpd image's command. The suite looks for "httpd" in the container's log and
// fetches the page on port 80; SIGWINCH is the image's stop signal (a graceful stop).
const httpdForeground = `#!/bin/sh
# Look-alike of the httpd image's httpd-foreground: busybox httpd serves /usr/local/apache2/htdocs on port 80.
trap 'kill "$child" 2>/dev/null; wait "$child"; exit 0' WINCH TERM INT
echo "httpd: serving $HTTPD_PREFIX/htdocs on port 80" >&2
"$HTTPD_PREFIX/bin/httpd" -f -p 80 -h "$HTTPD_PREFIX/htdocs" &
child=$!
wait "$child"
`

const httpdIndex = "<html><body><h1>It works!</h1></body></html>\n"

// pauseScript stands in for the pause binary: sleep until SIGINT or SIGTERM, then exit 0.
const pauseScript = `#!/bin/sh
# Look-alike of the pause container: sleeps until SIGINT or SIGTERM.
trap 'kill "$child" 2>/dev/null; exit 0' INT TERM
while :; do
	sleep 2147483647 &
	child=$!
	wait "$child"
done
`

// nnpScript stands in for the nonewprivs image's nnp, a set-user-ID root program that prints its effective
// uid. The set-user-ID program here is a copy of the host's coreutils id: busybox drops the privileges of a
// set-user-ID copy of itself before it runs an applet, and a script cannot be set-user-ID.
const nnpScript = `#!/bin/sh
# Prints the effective uid that a set-user-ID root program runs with here: 0, unless no_new_privs kept the
# set-user-ID bit from taking effect.
echo "Effective uid: $(/usr/local/libexec/nnp/id -u)"
`
