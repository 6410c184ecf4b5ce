// Command withdaemon starts a warmpod daemon with integration/launch, runs
// a command against it, then stops the daemon, for the shell scripts
// ("make run", integration/gpu/run.sh):
//
//	withdaemon [flags] [COMMAND [ARG...]]
//
// It waits until the daemon's socket answers before it runs COMMAND, with
// WARMPOD_SOCKET naming the socket in COMMAND's environment, and exits
// with COMMAND's status. With --serve, or without a COMMAND, the daemon
// keeps serving (after COMMAND succeeded) until SIGINT or SIGTERM. The
// daemon runs in a process group of its own: a Ctrl-C reaches withdaemon
// and COMMAND, and withdaemon then stops the daemon with SIGTERM (SIGKILL
// after 30 s).
//
// With --private TAG the daemon gets places of its own under --dir (root,
// state directory, configuration file, log; a bridge, subnet, iptables
// chains and cgroup parent named after TAG), and everything it made but
// its log is removed at the end; each process or mount it left is
// reported as a leak. Without it the daemon runs on its defaults, which are
// left as they are: pods still running keep running in their shims.
package main
