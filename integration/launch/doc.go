// Package launch starts warmpod daemons for the integration suite, the
// conformance run, the demo and the GPU check, and cleans up after them.
// It is the one place that knows how: build or find the binary
// ([Binary]), give a daemon places of its own ([Private]: root, state
// directory, socket, bridge, subnet, iptables chain prefix and cgroup
// parent, so it never meets a daemon on the defaults or another run's),
// write its configuration file, start it with its output appended to a
// log file and wait until its socket answers Version ([Daemon.Start]),
// stop it by its PID, SIGTERM then SIGKILL ([Daemon.Stop]), and remove
// what it made ([Daemon.Remove]).
//
// integration/cmd/withdaemon wraps it for shell scripts: it starts a
// daemon, runs a command against it, then stops it and cleans up.
package launch
