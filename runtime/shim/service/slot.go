package service

import "github.com/warmpod/warmpod/runtime/shim"

// slot is one container name of the pod, across every container created
// under that name and every generation of them: the template of its latest
// container, that container, and the pre-created next generation.
//
// The next generation of a slot is in one of three states, and changes only
// through the methods below:
//
//	           startPreparing                 finishPreparing (kept)
//	┌──────┐ ─────────────────▶ ┌───────────┐ ─────────────────────▶ ┌───────┐
//	│ none │  wanted, and the   │ preparing │  made with one of the  │ ready │
//	│      │  pod quiet         │           │  node's tokens, at     │       │
//	│      │                    │           │  idle CPU priority     │       │
//	└──────┘ ◀───────────────── └───────────┘                        └───────┘
//	   ▲      finishPreparing (failed, or the template changed           │
//	   │      meanwhile: the generation is discarded)                    │
//	   └──── takeNext (create, restart), dropNext (update, shutdown) ────┘
//
// Beside the state, "wanted" is a standing request for a next generation:
// want sets it (a start, a reset, a restart by rule, an update), and
// startPreparing clears it, as does adopt: a new container of the name
// wants its next generation once it is started. A create or a restart that
// finds the slot preparing waits for the generation in the making (tens of
// milliseconds) rather than making another beside it.
//
// Preconditions for every field and method: Shim.mu held.
type slot struct {
	name string
	// tmpl is the template of the latest container; next generations are
	// made from it.
	tmpl *template
	// latest is the container created last under this name; nil once it is
	// removed (the slot keeps its template and next generation: the kubelet
	// removes a container right before it creates its successor).
	latest *ctr
	// next is the pre-created next generation (state ready).
	next *gen
	// preparing is the state preparing: precreateLoop is making next.
	preparing bool
	// wanted asks for a next generation.
	wanted bool
	// init is set once the slot is known to be an init container: its
	// container completed successfully before a later container was
	// created, or the pod's config names it.
	init       bool
	classified bool
}

// adopt makes c, with template t, the slot's latest container.
func (sl *slot) adopt(c *ctr, t *template) {
	sl.tmpl = t
	sl.latest = c
	sl.wanted = false
}

// forget lets go of c when it is the slot's latest container.
func (sl *slot) forget(c *ctr) {
	if sl.latest == c {
		sl.latest = nil
	}
}

// want asks for a next generation, made once the pod is quiet.
func (sl *slot) want() { sl.wanted = true }

// needsPreparing tells whether precreateLoop should make a next generation
// now.
func (sl *slot) needsPreparing() bool {
	return sl.wanted && sl.next == nil && sl.tmpl != nil && !sl.tmpl.ephemeral() && !sl.preparing
}

// startPreparing moves the slot from none to preparing and returns the
// template to make the next generation from.
func (sl *slot) startPreparing() *template {
	sl.wanted = false
	sl.preparing = true
	return sl.tmpl
}

// finishPreparing ends preparing with g, made from t (nil when it failed).
// The slot keeps g, and finishPreparing returns true, unless t is no longer
// the slot's template or the shim is closing (closed); the caller then
// discards g.
func (sl *slot) finishPreparing(g *gen, t *template, closed bool) bool {
	sl.preparing = false
	if g == nil || closed || sl.tmpl != t || sl.next != nil {
		return false
	}
	sl.next = g
	return true
}

// takeNext moves the slot from ready to none and returns the generation it
// held (nil in state none). It must not be called while preparing: see
// Shim.takeNextLocked.
func (sl *slot) takeNext() *gen {
	g := sl.next
	sl.next = nil
	return g
}

// dropNext is takeNext for a generation that is of no use any more: the
// caller discards it.
func (sl *slot) dropNext() *gen { return sl.takeNext() }

// retemplate gives c's later generations template t, when c is the slot's
// latest container, and returns the next generation made with the old one
// (nil if none), for the caller to discard.
func (sl *slot) retemplate(c *ctr, t *template) *gen {
	if sl.latest != c {
		return nil
	}
	sl.tmpl = t
	return sl.dropNext()
}

// warmFor tells whether c is the slot's latest container and a next
// generation is ready for it.
func (sl *slot) warmFor(c *ctr) bool { return sl.latest == c && sl.next != nil }

// classify decides, once, whether the slot ran as an init container: it did
// when its container had completed successfully by the time a later slot
// appeared; a container still running then is not one.
func (sl *slot) classify() {
	if sl.classified || sl.latest == nil {
		return
	}
	r := sl.latest.record()
	switch r.State {
	case shim.StateExited:
		sl.init = r.ExitCode == 0
		sl.classified = true
	case shim.StateRunning:
		sl.classified = true
	}
}

// markInit records that the pod's config names the slot an init container.
func (sl *slot) markInit() { sl.init, sl.classified = true, true }

// takeNextLocked takes sl's next generation (nil if none), waiting first
// for one in preparation: it finishes in tens of milliseconds, which is
// cheaper than creating another beside it.
// Preconditions: s.mu held (released while waiting).
func (s *Shim) takeNextLocked(sl *slot) *gen {
	for sl.preparing {
		s.idle.Wait()
	}
	return sl.takeNext()
}

// isInit tells whether sl runs as an init container.
func (s *Shim) isInit(sl *slot) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sl.init
}
