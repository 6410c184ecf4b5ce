package service

import (
	"cmp"
	"slices"
	"time"

	"github.com/warmpod/warmpod/runtime/shim"
)

// The pod's container events.
//
// Every committed transition of a container is one event, stamped with the
// time of the transition, which is also the time its record keeps
// (CreatedAt, StartedAt, FinishedAt): a watcher can compare the event with
// the statuses it reads. The pod's events are published under evMu in the
// order of their timestamps, and no two have the same: a transition whose
// time is not after the pod's last event (its exit was reaped before
// another container's event went out) takes the time just after it, in its
// record too. So a watcher that keeps, per pod, what the newest event said
// ends with what the last one said.
//
// While the shim restarts a container itself (a reset, a restart rule),
// its events are held back (suppressEvents), so that the kubelet never acts
// on an exit the shim is already undoing. resumeEvents then tells what
// happened meanwhile, in order: the end of the run before the restart (the
// kill, or the exit that matched the rule), the start of the new run, and
// its exit when it has already ended (an init container), each with its
// real time.

// stampLocked returns ts, or the time just after the pod's last event when
// ts is not after it, and makes it the last event's.
// Preconditions: s.evMu held.
func (s *Shim) stampLocked(ts int64) int64 {
	if ts <= s.lastEvent {
		ts = s.lastEvent + 1
	}
	s.lastEvent = ts
	return ts
}

// publishLocked publishes e, an event about c.
// Preconditions: c.mu and s.evMu held; e's timestamp is from stampLocked.
func (s *Shim) publishLocked(c *ctr, e shim.Event) {
	e.Current = c.rec
	s.events.Publish(e)
	c.told, c.toldAny = e.Container, true
}

// commit records c's state on disk and publishes event t about it, stamped
// with the time c's record keeps for it.
// Preconditions: c.mu held, so records and events keep the order of the
// transitions.
func (s *Shim) commit(c *ctr, t shim.EventType) shim.Record {
	if c.eventsSuppressed {
		s.put(c)
		return c.rec
	}
	s.evMu.Lock()
	defer s.evMu.Unlock()
	c.rec.SetTime(t, s.stampLocked(c.rec.Time(t)))
	s.put(c)
	s.publishLocked(c, shim.Event{Type: t, Container: c.rec, Timestamp: c.rec.Time(t)})
	return c.rec
}

// put writes c's record to the pod's journal.
// Preconditions: c.mu held.
func (s *Shim) put(c *ctr) {
	rec := c.rec
	if err := s.records.put(rec); err != nil {
		s.log.WithError(err).WithField("container", rec.ID).Warn("record container state; written again with the next record")
	}
}

// publishDeleted publishes the removal of c.
// Preconditions: c.mu held, c.removed set: no event of c follows.
func (s *Shim) publishDeleted(c *ctr) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	ts := s.stampLocked(time.Now().UnixNano())
	s.events.Publish(shim.Event{Type: shim.EventDeleted, Container: c.rec, Timestamp: ts})
}

// ruleDone ends the restart of an exit of c that matched a restart rule
// (rulesPending); the caller then resumes c's events.
func (c *ctr) ruleDone() {
	c.mu.Lock()
	c.rulesPending--
	c.mu.Unlock()
}

// suppressEvents holds back c's events until resumeEvents: the shim is
// about to restart c itself (a reset, a restart rule).
func (c *ctr) suppressEvents() {
	c.mu.Lock()
	c.eventsSuppressed = true
	c.mu.Unlock()
}

// resumeEvents ends the suppression of the events of cs, a reset's
// containers in start order, and publishes what happened to them since
// their last event (shim.Transitions), all of them in the order it
// happened.
func (s *Shim) resumeEvents(cs []*ctr) {
	var held []*ctr
	for _, c := range cs {
		if !slices.Contains(held, c) {
			c.mu.Lock()
			held = append(held, c)
		}
	}
	defer func() {
		for _, c := range held {
			c.mu.Unlock()
		}
	}()
	type pending struct {
		c *ctr
		e shim.Event
	}
	var evs []pending
	for _, c := range held {
		if !c.eventsSuppressed || c.rulesPending > 0 {
			// A restart by rule of c is still to come: it tells.
			continue
		}
		c.eventsSuppressed = false
		if c.removed {
			continue
		}
		var from *shim.Record
		if c.toldAny {
			from = &c.told
		}
		for _, e := range shim.Transitions(from, c.rec) {
			evs = append(evs, pending{c, e})
		}
	}
	slices.SortStableFunc(evs, func(a, b pending) int {
		return cmp.Compare(a.e.Timestamp, b.e.Timestamp)
	})
	s.evMu.Lock()
	defer s.evMu.Unlock()
	for _, p := range evs {
		if ts := s.stampLocked(p.e.Timestamp); ts != p.e.Timestamp {
			retime(p.c, &p.e, ts)
			s.put(p.c)
		}
		if p.e.Container.RestartCount == p.c.rec.RestartCount {
			p.e.Container.LastTermination = p.c.rec.LastTermination
		}
		s.publishLocked(p.c, p.e)
	}
}

// retime moves event e of c, and the time c's record keeps of it, to ts:
// another event of the pod went out after e's transition and before e.
// Preconditions: c.mu held.
func retime(c *ctr, e *shim.Event, ts int64) {
	e.Timestamp = ts
	e.Container.SetTime(e.Type, ts)
	r := &c.rec
	switch {
	case e.Container.RestartCount == r.RestartCount:
		r.SetTime(e.Type, ts)
	case e.Type == shim.EventStopped && e.Container.RestartCount+1 == r.RestartCount && r.LastTermination != nil:
		t := *r.LastTermination
		t.FinishedAt = ts
		r.LastTermination = &t
	}
}
