package gossip

import (
	"fmt"
	"net/netip"
	"time"
)

// State is a member's state as this node sees it.
type State uint8

// States.
const (
	StateAlive   State = iota + 1 // answering probes
	StateSuspect                  // missed a probe; has until the suspicion timeout to refute (not reported yet: see Members)
	StateDead                     // declared failed by the cluster
	StateLeft                     // left on purpose (Leave)
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// EventType says what happened to a member.
type EventType uint8

// Event types. Their String values are the events metric's labels.
const (
	EventJoin   EventType = iota + 1 // a member appeared (or came back)
	EventLeave                       // a member left on purpose
	EventFailed                      // a member was declared dead
	EventUpdate                      // a member's metadata changed
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	case EventUpdate:
		return "update"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Member is one node of the cluster.
type Member struct {
	Meta  Meta           // decoded metadata; only Meta.ID when MetaErr is set
	Addr  netip.AddrPort // gossip address
	State State
	Local bool // this node
	// MetaErr is set when the member's metadata could not be decoded (a
	// newer metadata version, say). Membership holds all the same.
	MetaErr error
}

// Event is a change in membership delivered to Config.OnEvent.
type Event struct {
	Type   EventType
	Member Member
	At     time.Time // when this node learnt it
}

// Drop reasons, shared by logs and the drops metric label.
const (
	dropQueueFull = "queue_full" // an event met a full OnEvent queue
	dropClosed    = "closed"     // an event arrived while the cluster was closing
)
