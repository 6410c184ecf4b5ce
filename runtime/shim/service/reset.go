package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
//     completion; one that fails (to start, or in its run) is retried with
//     back-off until ctx ends, unless the pod's restart policy is Never:
//     then, as when ctx ends, the sequence ends there and the containers
//     after it stay exited, as the kubelet starts no app container of a
//     pod whose init containers did not complete.
//  3. Sidecars and main containers start in their original order. One that
//     cannot be started is recorded as exited with reason StartError, and
//     the sequence goes on with the next. Ephemeral containers stay
//     exited (target.go).
//
// Each container keeps its id; its restart count goes up and its previous
// run becomes its last termination. Reset returns once the last container
// has been started, with every record, and an error that names each
// container it could not start. A reset asked for during another runs
// after it.
func (s *Shim) Reset(ctx context.Context) ([]shim.Record, time.Duration, error) {
	return s.reset(ctx, shim.TriggerResetPod, nil)
}

// reset is Reset asked for by trigger, which its stats are counted under.
// served, when not nil, ends the restart rule the reset carries out
// (applyRule), before the reset tells what it did: the exit that asked for
// it is told with the rest, in the order it all happened.
func (s *Shim) reset(ctx context.Context, trigger string, served func()) (recs []shim.Record, d time.Duration, err error) {
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
	err = s.restartAll(ctx, cs, start)
	d = time.Since(start)
	s.scheduleAll()
	if served != nil {
		served()
	}
	// Before the records are read: resuming may move a time in them.
	s.resumeEvents(cs)
	return s.recordsOf(cs), d, err
}

// restartAll kills the containers of cs and starts them again in order.
func (s *Shim) restartAll(ctx context.Context, cs []*ctr, start time.Time) error {
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
	// A container that cannot be started is recorded so and the sequence
	// goes on: the containers after it do not stay dead for it. An init
	// container that does not complete ends the sequence (restartInPlace).
	var steps []string
	var errs []error
	for _, c := range cs {
		if c.template().ephemeral() {
			// Terminated with the others, never restarted (target.go).
			continue
		}
		if err := s.restartInPlace(ctx, c); err != nil {
			errs = append(errs, err)
			if !errors.Is(err, errStartFailed) {
				break
			}
			continue
		}
		if l.Logger.IsLevelEnabled(log.DebugLevel) {
			steps = append(steps, fmt.Sprintf("%s@%s", c.name, time.Since(start)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.Debugf("reset in %s: killed at %s, started %v", time.Since(start), killed, steps)
	return nil
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

// errStartFailed marks the error of a container that could not be started
// again: it is recorded as exited with reason StartError, and a reset goes
// on with the next container.
var errStartFailed = errors.New("failed to start")

// restartInPlace gives c a new generation, the pre-created one when ready,
// and starts it; for an init container it waits for its successful
// completion. An init container that fails, to start or in its run, is run
// again after a back-off until ctx ends, or, when the pod's restart policy
// is Never, ends the reset; any other container that fails to start is
// recorded so (errStartFailed).
func (s *Shim) restartInPlace(ctx context.Context, c *ctr) error {
	backoff := initRetryBackoff
	for {
		g, err := s.startNext(c)
		if errors.Is(err, errRemoved) {
			return nil
		}
		if errors.Is(err, errFenced) {
			return err
		}
		init := s.isInit(c.slot)
		switch {
		case err != nil && !init:
			return fmt.Errorf("restart container %q: %w: %w", c.name, errStartFailed, err)
		case err != nil:
			err = fmt.Errorf("init container %q failed to start: %w", c.name, err)
		case !init:
			return nil
		default:
			// The next container may start once this one's process is
			// gone; its exit record is made meanwhile.
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
			err = fmt.Errorf("init container %q exited with code %d", c.name, code)
		}
		if s.cfg.RestartPolicy == "Never" {
			return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
		}
		log.G(ctx).WithField("container", c.name).WithError(err).Debugf("retrying init container in %s", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", err, ctx.Err())
		}
		backoff = min(2*backoff, initRetryMaxBackoff)
	}
}

// errRemoved is startNext's answer for a container removed meanwhile.
var errRemoved = errors.New("container removed")

// startNext gives c its next generation and releases it. When none can be
// made or released, c is recorded as exited with reason StartError and the
// error is returned. Either way its previous run becomes its last
// termination and its restart count goes up. A container removed
// meanwhile gets nothing (errRemoved); once Shutdown has begun nothing is
// started (errFenced).
func (s *Shim) startNext(c *ctr) (*gen, error) {
	g, warm, err := s.takeNext(c)
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		if g != nil {
			s.discard(g)
		}
		return nil, errRemoved
	}
	if ferr := s.fenced(); ferr != nil {
		c.mu.Unlock()
		if g != nil {
			s.discard(g)
		}
		return nil, ferr
	}
	old := c.gen
	s.retireRun(c)
	if err != nil {
		c.gen = nil
		now := time.Now().UnixNano()
		c.rec.State = shim.StateExited
		c.rec.Pid = 0
		c.rec.StartedAt = 0
		c.rec.FinishedAt = now
		c.rec.ExitCode = shim.StartErrorExitCode
		c.rec.Reason = shim.ReasonStartError
		c.rec.Message = err.Error()
		c.rec.FromWarm = false
	} else {
		c.rec.FromWarm = warm
		s.stats.created(warm)
		s.bind(c, g)
		err = s.release(c, g)
	}
	s.commit(c, c.rec.State.Event())
	c.mu.Unlock()
	if old != nil && old != g {
		s.discard(old)
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}

// retireRun makes c's current run its last termination and counts the
// restart that replaces it.
// Preconditions: c.mu held; c's current generation has exited.
func (s *Shim) retireRun(c *ctr) {
	prev := c.rec
	switch {
	case prev.State == shim.StateExited && prev.FinishedAt != 0:
		c.rec.LastTermination = &shim.Termination{
			ExitCode:   prev.ExitCode,
			StartedAt:  prev.StartedAt,
			FinishedAt: prev.FinishedAt,
			Reason:     prev.Reason,
			Message:    prev.Message,
		}
	case prev.State == shim.StateRunning && c.gen != nil:
		// Killed and reaped, but its monitor has not recorded it yet
		// (and, the generation replaced, never will).
		code, at := c.gen.c.Init.Exit()
		c.rec.LastTermination = &shim.Termination{
			ExitCode:   int32(code),
			StartedAt:  prev.StartedAt,
			FinishedAt: at.UnixNano(),
			Reason:     shim.ReasonError,
		}
	}
	c.rec.RestartCount++
}

// takeNext returns the pre-created generation of c's slot when it fits c,
// or a freshly created one.
func (s *Shim) takeNext(c *ctr) (*gen, bool, error) {
	t := c.template()
	s.mu.Lock()
	g, stale := s.takeNextLocked(c.slot, t.key)
	s.mu.Unlock()
	for _, old := range stale {
		s.discard(old)
	}
	if g != nil {
		return g, true, nil
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
		s.saveTermMessage(c, g)
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
		// The rule is done once, by the reset that carries it out or
		// when the restart ends otherwise.
		var once sync.Once
		done := func() { once.Do(c.ruleDone) }
		defer s.leave()
		defer s.resumeEvents([]*ctr{c})
		defer done()
		var err error
		switch action {
		case shim.ActionRestart:
			err = s.restartOne(ctx, c)
		case shim.ActionRestartAllContainers:
			_, _, err = s.reset(ctx, shim.TriggerRestartRule, done)
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
