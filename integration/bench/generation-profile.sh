#!/usr/bin/env bash
# Breaks the cost of one container generation down, for each spawner: the
# wall time of each step (runtime/container's BenchmarkGeneration, which for
# the fast spawner also reports the init's own phases) and, from a perf
# profile of the same benchmark and every process it starts, the CPU time of
# each of those processes by kernel operation (integration/cmd/genprofile).
# Work the kernel defers to its own threads (freeing cgroups and mounts after
# an RCU grace period, say) is not in the profile: other engineers' work on a
# shared machine would be, and it would drown it.
#
#   integration/bench/generation-profile.sh [-n GENERATIONS] [SCENARIO]
#
# SCENARIO is a sub-benchmark of BenchmarkGeneration: default (the default CRI
# container), seccomp (RuntimeDefault) or after-idle (200 ms between
# generations). Needs root, busybox-static and perf; it creates containers,
# so run it as "flock /tmp/warmpod-heavy.lock ..." on shared machines.
set -euo pipefail

n=40
if [ "${1:-}" = "-n" ]; then n=$2; shift 2; fi
scenario=${1:-default}
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/warmpod-genprofile.XXXXXX)
trap 'rm -rf "$work"' EXIT
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }

cd "$top"
go test -c -tags seccomp -o "$work/container.test" ./runtime/container/
go build -o "$work/genprofile" ./integration/cmd/genprofile
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cd runtime/container
for spawner in libcontainer fast; do
  bench="Generation/$spawner/$scenario\$"
  echo "== $spawner, $scenario: wall time per step (ms per generation)"
  "$work/container.test" -test.run XXX -test.bench "$bench" -test.benchtime "${n}x" |
    grep Benchmark | tr '\t' '\n' | sed -n 's/^ *\([0-9.]*\) \(.*\)-ms\/op$/  \2 \1/p; s/^ *\([0-9.]*\) \(cpu-ms\/op\|machine-cpu-ms\/op\)$/  \2 \1/p'
  echo "== $spawner, $scenario: CPU time per generation by process and kernel operation (perf)"
  perf record -q -g -o "$work/perf.data" -- "$work/container.test" -test.run XXX -test.bench "$bench" \
    -test.benchtime "${n}x" >/dev/null 2>&1
  # The benchmark runs its body once more to size itself: n+1 generations.
  perf script -i "$work/perf.data" -F comm,tid,period,ip,sym,dso 2>/dev/null | "$work/genprofile" -n $((n + 1))
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
