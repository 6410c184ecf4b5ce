package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress reports a long command's phases on stderr. On a terminal it
// keeps one line up to date; elsewhere (a log, CI) it writes one line when
// a phase starts and one when it ends. A nil *progress reports nothing.
type progress struct {
	w        io.Writer
	terminal bool

	mu    sync.Mutex
	name  string
	total int
	done  int
	start time.Time
	drawn time.Time
}

func newProgress(w io.Writer) *progress {
	terminal := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			terminal = st.Mode()&os.ModeCharDevice != 0
		}
	}
	return &progress{w: w, terminal: terminal}
}

// phase ends the current phase and starts one of total steps (0: unknown).
func (p *progress) phase(name string, total int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLocked()
	p.name, p.total, p.done, p.start = name, total, 0, time.Now()
	if p.terminal {
		p.drawLocked()
	} else {
		fmt.Fprintf(p.w, "warmpodctl: %s ...\n", name)
	}
}

// step counts one step of the current phase done.
func (p *progress) step() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if p.terminal && (time.Since(p.drawn) >= 100*time.Millisecond || p.done == p.total) {
		p.drawLocked()
	}
}

// end ends the current phase.
func (p *progress) end() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLocked()
}

func (p *progress) endLocked() {
	if p.name == "" {
		return
	}
	took := time.Since(p.start).Round(100 * time.Millisecond)
	if p.terminal {
		p.drawLocked()
		fmt.Fprintf(p.w, ", %s\n", took)
	} else {
		fmt.Fprintf(p.w, "warmpodctl: %s: %s in %s\n", p.name, p.count(), took)
	}
	p.name = ""
}

func (p *progress) count() string {
	if p.total > 0 {
		return fmt.Sprintf("%d/%d", p.done, p.total)
	}
	return fmt.Sprintf("%d", p.done)
}

func (p *progress) drawLocked() {
	fmt.Fprintf(p.w, "\r\033[K%s: %s", p.name, p.count())
	p.drawn = time.Now()
}
