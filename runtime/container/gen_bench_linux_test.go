package container

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/oci"
)

// cpuClock is CPU time used so far by this process and its reaped children
// (container processes are: the shim, here the test binary, reaps them), and
// by the whole machine.
type cpuClock struct {
	own, machine time.Duration
}

func readCPU(tb testing.TB) cpuClock {
	var self, children unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &self); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &children); err != nil {
		tb.Fatal(err)
	}
	tv := func(t unix.Timeval) time.Duration { return time.Duration(t.Nano()) }
	c := cpuClock{own: tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		// user nice system idle iowait irq softirq steal: all but idle and iowait.
		for i, v := range f[1:min(len(f), 9)] {
			if i == 3 || i == 4 {
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			c.machine += time.Duration(n) * time.Second / 100
		}
	}
	return c
}

// phases accumulates the wall time of the steps of a generation's life.
type phases struct {
	names []string
	wall  map[string]time.Duration
	last  time.Time
}

func newPhases() *phases { return &phases{wall: map[string]time.Duration{}} }

func (p *phases) start() { p.last = time.Now() }

func (p *phases) mark(name string) {
	now := time.Now()
	if _, ok := p.wall[name]; !ok {
		p.names = append(p.names, name)
	}
	p.wall[name] += now.Sub(p.last)
	p.last = now
}

func (p *phases) add(name string, d time.Duration) {
	if _, ok := p.wall[name]; !ok {
		p.names = append(p.names, name)
	}
	p.wall[name] += d
}

func (p *phases) report(b *testing.B) {
	for _, n := range p.names {
		b.ReportMetric(float64(p.wall[n].Microseconds())/1000/float64(b.N), n+"-ms/op")
	}
}

// BenchmarkGeneration measures the whole life of one container generation of
// the default CRI container (own pid and mount namespaces, the pod's network,
// IPC and UTS namespaces, no seccomp): rootfs mount, create, release, the
// command (true) running to its exit, destroy and rootfs removal, one after
// the other. It reports the wall time of each step and the CPU time of the
// test process and its reaped children (every container process) per
// generation, and the CPU time the whole machine spent meanwhile (noisy
// where other work runs).
//
//	go test -tags seccomp -run XXX -bench Generation ./runtime/container/
func BenchmarkGeneration(b *testing.B) {
	for _, spawner := range []string{SpawnerLibcontainer, SpawnerFast} {
		b.Run(spawner, func(b *testing.B) { benchmarkGeneration(b, spawner) })
	}
}

func benchmarkGeneration(b *testing.B, spawner string) {
	for _, bc := range []struct {
		name string
		sec  oci.Security
		idle time.Duration
	}{
		{name: "default"},
		{name: "seccomp", sec: oci.Security{Seccomp: &oci.SecurityProfile{Type: oci.ProfileRuntimeDefault}}},
		{name: "after-idle", idle: 200 * time.Millisecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newTestPod(b, spawner)
			ph := newPhases()
			steps := newPhases()
			var idle time.Duration
			cpu0 := readCPU(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if bc.idle > 0 {
					b.StopTimer()
					time.Sleep(bc.idle)
					idle += bc.idle
					b.StartTimer()
				}
				ph.start()
				id := fmt.Sprintf("gen%d", i)
				c := &oci.Container{Command: []string{"/bin/true"}, Security: bc.sec}
				c.Security.Namespaces.PID = oci.NamespaceContainer
				s := p.spec(b, c)
				ph.mark("spec")
				r := p.mount(b, id, s)
				ph.mark("mount")
				g, err := p.engine.Create(Config{ID: id, Spec: s, Template: bc.name})
				if err != nil {
					b.Fatal(err)
				}
				ph.mark("create")
				for _, st := range g.Phases().Steps {
					steps.add(st.Name, st.D)
				}
				if err := g.Release(); err != nil {
					b.Fatal(err)
				}
				ph.mark("release")
				<-g.Init.Done()
				if code, _ := g.Init.Exit(); code != 0 {
					b.Fatalf("exit code %d", code)
				}
				ph.mark("run")
				if err := g.Destroy(); err != nil {
					b.Fatal(err)
				}
				g.Init.IO.Close()
				ph.mark("destroy")
				if err := r.Remove(); err != nil {
					b.Fatal(err)
				}
				ph.mark("rootfs-remove")
			}
			b.StopTimer()
			cpu1 := readCPU(b)
			ph.report(b)
			steps.report(b)
			b.ReportMetric(float64((cpu1.own-cpu0.own).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			machine := cpu1.machine - cpu0.machine - 0
			b.ReportMetric(float64(machine.Microseconds())/1000/float64(b.N), "machine-cpu-ms/op")
		})
	}
}
