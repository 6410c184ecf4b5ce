package shim

// EventType says what happened to a container.
type EventType int

const (
	EventCreated EventType = iota + 1
	EventStarted
	EventStopped
	EventDeleted
)

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

// Event is one container transition.
type Event struct {
	Type      EventType
	Container Record
	Timestamp int64
}
