package service

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/warmpod/warmpod/runtime/shim"
)

// initRetryBackoff is the first wait before a failed init container runs
// again during a reset; it doubles up to initRetryMaxBackoff.
const (
	initRetryBackoff    = 10 * time.Millisecond
	initRetryMaxBackoff = time.Second
)

// Reset restarts every container of the pod in place, the way Kubernetes'
// RestartAllContainers does:
//
//  1. AllContainersRestarting: every container is killed at once, without a
//     stop signal or grace period, and its exit recorded.
//  2. Init containers run again in their original order, each to
//     completion; a failing one is retried with back-off until ctx ends,
//     unless the pod's restart policy is Never.
//  3. Sidecars and main containers start in their original order.
//
// Each container keeps its id; its restart count goes up and its previous
// run becomes its last termination. Reset returns once the last container
// has been started. A reset asked for during another runs after it.
func (s *Shim) Reset(ctx context.Context) ([]shim.Record, time.Duration, error) {
	return s.reset(ctx, shim.TriggerResetPod)
}

// reset is Reset asked for by trigger, which its stats are counted under.
func (s *Shim) reset(ctx context.Context, trigger string) (recs []shim.Record, d time.Duration, err error) {
	if err := s.enter(); err != nil {
		return nil, 0, err
	}
	defer s.leave()
	ctx, cancel := s.withStop(ctx)
	defer cancel()
	defer func() { s.stats.reset(trigger, d, err) }()
	s.resetMu.Lock()
	defer s.resetMu.Unlock()
	start := time.Now()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, 0, s.errShuttingDown()
	}
	var cs []*ctr
	for _, sl := range s.order {
		if sl.latest != nil {
			cs = append(cs, sl.latest)
		}
	}
	s.foreground++
	s.restarting = true
	s.mu.Unlock()
	defer s.endForeground()
	for _, c := range cs {
		c.suppressEvents()
	}
	defer func() {
		for _, c := range cs {
			s.resumeEvents(c)
		}
	}()

	s.killAll(cs)
	killed := time.Since(start)
	if s.killedHook != nil {
		s.killedHook()
	}

	s.mu.Lock()
	s.restarting = false
	s.resets++
	s.mu.Unlock()

	l := log.G(ctx)
	var steps []string
	for _, c := range cs {
		if err := s.restartInPlace(ctx, c); err != nil {
			s.scheduleAll()
			return s.recordsOf(cs), time.Since(start), err
		}
		if l.Logger.IsLevelEnabled(log.DebugLevel) {
			steps = append(steps, fmt.Sprintf("%s@%s", c.name, time.Since(start)))
		}
	}
	d = time.Since(start)
	l.Debugf("reset in %s: killed at %s, started %v", d, killed, steps)
	s.scheduleAll()
	return s.recordsOf(cs), d, nil
}

// killAll kills the current generation of every container in cs and waits
// until each exit is recorded.
func (s *Shim) killAll(cs []*ctr) {
	var wait []*gen
	for _, c := range cs {
		c.mu.Lock()
		c.killing = true
		g, st := c.gen, c.rec.State
		c.mu.Unlock()
		switch st {
		case shim.StateRunning:
			_ = g.kill()
			wait = append(wait, g)
		case shim.StateCreated:
			// Never released: nothing ran, nothing to record.
			_ = g.kill()
		}
	}
	// The processes are gone once reaped; their exit records are the
	// monitors' business and need not hold up the restart.
	for _, g := range wait {
		<-g.c.Init.Done()
	}
}

// restartInPlace gives c a new generation, the pre-created one when ready,
// and starts it; for an init container it waits for its successful
// completion.
func (s *Shim) restartInPlace(ctx context.Context, c *ctr) error {
	backoff := initRetryBackoff
	for {
		g, warm, err := s.takeNext(c)
		if err != nil {
			return err
		}
		c.mu.Lock()
		if c.removed {
			c.mu.Unlock()
			s.discard(g)
			return nil
		}
		if err := s.fenced(); err != nil {
			c.mu.Unlock()
			s.discard(g)
			return err
		}
		old := c.gen
		prev := c.rec
		switch {
		case prev.State == shim.StateExited && prev.StartedAt != 0:
			c.rec.LastTermination = &shim.Termination{
				ExitCode:   prev.ExitCode,
				StartedAt:  prev.StartedAt,
				FinishedAt: prev.FinishedAt,
				Reason:     prev.Reason,
				Message:    prev.Message,
			}
		case prev.State == shim.StateRunning && old != nil:
			// Killed and reaped, but its monitor has not recorded it yet
			// (and, the generation replaced, never will).
			code, at := old.c.Init.Exit()
			c.rec.LastTermination = &shim.Termination{
				ExitCode:   int32(code),
				StartedAt:  prev.StartedAt,
				FinishedAt: at.UnixNano(),
				Reason:     shim.ReasonError,
			}
		}
		c.rec.RestartCount++
		c.rec.FromWarm = warm
		s.stats.created(warm)
		s.bind(c, g)
		err = s.release(c, g)
		s.commit(c, shim.EventStarted)
		c.mu.Unlock()
		if old != nil && old != g {
			s.discard(old)
		}
		if err != nil {
			return err
		}
		if !s.isInit(c.slot) {
			return nil
		}
		// The next container may start once this one's process is gone;
		// its exit record is made meanwhile.
		select {
		case <-g.c.Init.Done():
		case <-ctx.Done():
			return fmt.Errorf("wait for init container %q: %w", c.name, ctx.Err())
		}
		code := s.noteExit(c, g)
		if code == 0 {
			return nil
		}
		<-g.exited
		if s.cfg.RestartPolicy == "Never" {
			return fmt.Errorf("init container %q exited with code %d: %w", c.name, code, errdefs.ErrFailedPrecondition)
		}
		log.G(ctx).WithField("container", c.name).Debugf("init container exited with %d, retrying in %s", code, backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("init container %q exited with code %d: %w", c.name, code, ctx.Err())
		}
		backoff = min(2*backoff, initRetryMaxBackoff)
	}
}

// takeNext returns the pre-created generation of c's slot when it fits c,
// or a freshly created one.
func (s *Shim) takeNext(c *ctr) (*gen, bool, error) {
	s.mu.Lock()
	g := s.takeNextLocked(c.slot)
	s.mu.Unlock()
	t := c.template()
	if g != nil && g.key == t.key {
		return g, true, nil
	}
	if g != nil {
		s.discard(g)
	}
	g, err := s.newGen(t, false)
	if err != nil {
		return nil, false, fmt.Errorf("restart container %q: %w", c.name, err)
	}
	return g, false, nil
}

// noteExit records the exit of g, c's generation whose process has been
// reaped, without waiting for its monitor (which refines it later, with the
// OOM verdict, once the output is drained). It returns the exit code.
func (s *Shim) noteExit(c *ctr, g *gen) int {
	code, at := g.c.Init.Exit()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == g && c.rec.State == shim.StateRunning {
		c.rec.State = shim.StateExited
		c.rec.FinishedAt = at.UnixNano()
		c.rec.ExitCode = int32(code)
		c.rec.Reason = shim.ReasonCompleted
		if code != 0 {
			c.rec.Reason = shim.ReasonError
		}
		s.commit(c, shim.EventStopped)
	}
	return code
}

func (s *Shim) recordsOf(cs []*ctr) []shim.Record {
	out := make([]shim.Record, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.record())
	}
	return out
}

// applyRule carries out the restart rule action that matched c's exit.
// c's events are suppressed until the restart is done (or failed).
// Preconditions: the restart is in flight (enter); applyRule leaves.
func (s *Shim) applyRule(c *ctr, action string, code int32) {
	l := s.log.WithField("container", c.name)
	l.Debugf("exit code %d matches a %s rule", code, action)
	ctx := log.WithLogger(context.Background(), l)
	go func() {
		defer s.leave()
		defer s.resumeEvents(c)
		var err error
		switch action {
		case shim.ActionRestart:
			err = s.restartOne(ctx, c)
		case shim.ActionRestartAllContainers:
			_, _, err = s.reset(ctx, shim.TriggerRestartRule)
		}
		if err != nil {
			l.WithError(err).Warnf("apply %s rule", action)
		}
	}()
}

// restartOne restarts container c alone, in place.
func (s *Shim) restartOne(ctx context.Context, c *ctr) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	ctx, cancel := s.withStop(ctx)
	defer cancel()
	s.resetMu.Lock()
	defer s.resetMu.Unlock()
	s.beginForeground()
	defer s.endForeground()
	c.mu.Lock()
	st, removed := c.rec.State, c.removed
	c.mu.Unlock()
	if removed || st != shim.StateExited {
		return nil
	}
	err := s.restartInPlace(ctx, c)
	s.schedule(c.slot)
	return err
}
