package shim

// EventType says what happened to a container.
type EventType int

const (
	EventCreated EventType = iota + 1
	EventStarted
	EventStopped
	EventDeleted
)

func (t EventType) String() string {
	switch t {
	case EventCreated:
		return "created"
	case EventStarted:
		return "started"
	case EventStopped:
		return "stopped"
	case EventDeleted:
		return "deleted"
	}
	return "unknown"
}

// Event is what a container entering state s reports.
func (s State) Event() EventType {
	switch s {
	case StateCreated:
		return EventCreated
	case StateRunning:
		return EventStarted
	}
	return EventStopped
}

// Event is one container transition: the container's record right after
// it, and when it happened. A pod's shim publishes its events in the order
// of their timestamps, which are unique within the pod; the timestamp of a
// created, started or stopped event is the record's CreatedAt, StartedAt or
// FinishedAt (see Time).
type Event struct {
	Type      EventType
	Container Record
	Timestamp int64
	// Current is the container's record when the event was published,
	// later than Container when the shim had moved past the transition
	// already (the exit of the run before an in-place restart, told once
	// the new run has started). A status follows Current, never
	// Container: a container that runs again is never read as exited.
	// Zero for a deletion.
	Current Record
}

// Time returns the time r records for a transition of type t: CreatedAt,
// StartedAt or FinishedAt; 0 for a deletion, which r does not record.
func (r *Record) Time(t EventType) int64 {
	switch t {
	case EventCreated:
		return r.CreatedAt
	case EventStarted:
		return r.StartedAt
	case EventStopped:
		return r.FinishedAt
	}
	return 0
}

// SetTime sets the time r records for a transition of type t (see Time).
func (r *Record) SetTime(t EventType, ts int64) {
	switch t {
	case EventCreated:
		r.CreatedAt = ts
	case EventStarted:
		r.StartedAt = ts
	case EventStopped:
		r.FinishedAt = ts
	}
}

// Transitions returns the events that take a watcher who was last told of
// a container with record from (nil: told nothing of it) to its record to,
// in the order they happened, each stamped with its time: created, started
// and stopped are never reordered nor merged, however close together they
// came. An in-place restart is told as the exit of the run before it
// (from to's LastTermination, unless the watcher was told of it) and the
// start of the new run; runs before that one have no record left and are
// not told. An exit told again with another reason or time (the OOM
// verdict) is a stopped event of its own.
func Transitions(from *Record, to Record) []Event {
	if to.State == StateUnknown {
		return nil
	}
	var out []Event
	count, state := uint32(0), StateCreated
	if from == nil || from.State == StateUnknown {
		if to.CreatedAt != 0 {
			out = append(out, Event{Type: EventCreated, Container: createdView(to), Timestamp: to.CreatedAt})
		}
	} else {
		count, state = from.RestartCount, from.State
	}
	restarted := to.RestartCount > count
	if restarted && to.LastTermination != nil && (state != StateExited || count != to.RestartCount-1) {
		prev := previousRun(to)
		out = append(out, Event{Type: EventStopped, Container: prev, Timestamp: prev.FinishedAt})
	}
	if to.State >= StateRunning && to.StartedAt != 0 && (restarted || state < StateRunning) {
		out = append(out, Event{Type: EventStarted, Container: runningView(to), Timestamp: to.StartedAt})
	}
	if to.State == StateExited && (restarted || state != StateExited || exitChanged(from, &to)) {
		out = append(out, Event{Type: EventStopped, Container: to, Timestamp: to.FinishedAt})
	}
	return out
}

func exitChanged(from, to *Record) bool {
	return from != nil && (from.FinishedAt != to.FinishedAt || from.ExitCode != to.ExitCode ||
		from.Reason != to.Reason || from.Message != to.Message)
}

// createdView is r as it was when its container was created.
func createdView(r Record) Record {
	r.State = StateCreated
	r.Pid = 0
	r.StartedAt, r.FinishedAt, r.ExitCode, r.Reason, r.Message = 0, 0, 0, "", ""
	r.RestartCount, r.LastTermination = 0, nil
	return r
}

// runningView is r as it was when its current run started.
func runningView(r Record) Record {
	r.State = StateRunning
	r.FinishedAt, r.ExitCode, r.Reason, r.Message = 0, 0, "", ""
	return r
}

// previousRun is r as it was when the run before its current one ended.
// Preconditions: r.LastTermination is set and r.RestartCount > 0.
func previousRun(r Record) Record {
	t := r.LastTermination
	r.State = StateExited
	r.Pid = 0
	r.RestartCount--
	r.StartedAt, r.FinishedAt, r.ExitCode, r.Reason, r.Message = t.StartedAt, t.FinishedAt, t.ExitCode, t.Reason, t.Message
	r.LastTermination = nil
	return r
}
