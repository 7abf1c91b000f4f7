package client

import (
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// EventType says what happened to the client's connection.
type EventType uint8

// Event types.
const (
	EventConnected    EventType = iota + 1 // first WELCOME of this client
	EventResumed                           // WELCOME on a later connection, resumed from last_seq
	EventDisconnected                      // a connection or connection attempt ended; Err says why
	EventGoaway                            // the relay asked the client to move, admitted or not yet; Redirect says where
	EventFailed                            // permanent error: the client stopped; Err says why
)

func (t EventType) String() string {
	switch t {
	case EventConnected:
		return "connected"
	case EventResumed:
		return "resumed"
	case EventDisconnected:
		return "disconnected"
	case EventGoaway:
		return "goaway"
	case EventFailed:
		return "failed"
	}
	return "unknown"
}

// Event is one change of the connection state, for display and metrics.
type Event struct {
	Type      EventType
	Transport string   // "ws" or "quic"
	URL       string   // the relay URL of the connection or attempt
	Welcome   *Welcome // Connected, Resumed
	Redirect  string   // Goaway: where the relay sends the client ("" = rotate)
	Err       error    // Disconnected, Failed
	Attempt   int      // consecutive failed attempts before this event
}

// Welcome is what the relay announced when it admitted a connection.
type Welcome struct {
	Transport   string // "ws" or "quic"
	URL         string
	Version     uint64 // negotiated protocol version
	Session     string
	Epoch       uint64
	HeadSeq     uint64 // highest committed seq of the session at admission
	ResumedFrom uint64 // last_seq sent in HELLO
	Resumed     bool   // HELLO carried last_seq
	MaxFrame    int    // largest frame the relay accepts
	ConnID      string
	Role        wire.Role // this client's role
	// Subject is this client's own subject id (WELCOME's sender): the
	// Sender of its messages and acks in other participants' deliveries
	// and in RECEIPTs. "" from a relay that does not send it.
	Subject       string
	Ping          time.Duration
	ConfigVersion uint64       // device config head version
	Config        *wire.Config // device config snapshot; nil if none or undecodable
}

// Delivery is a message from another participant. Payload belongs to the
// receiver.
type Delivery struct {
	Seq      uint64 // 0 for ephemeral messages
	Sender   string // short subject id of the sender
	Role     wire.Role
	Kind     wire.Kind
	Durable  bool
	ClientID string // the sender's client message id
	Payload  []byte
}

// Receipt is one ack stage of a message, as recorded in the session log.
type Receipt struct {
	Seq    uint64 // the receipt's own log seq
	RefSeq uint64 // the message it is about
	Stage  wire.Stage
	Reason string
	Sender string // who acked
	Role   wire.Role
}

// Stats are counters since New.
type Stats struct {
	Connects          uint64 // WELCOMEs received
	ConnectFailures   uint64 // attempts that did not reach WELCOME
	Duplicates        uint64 // DELIVER/RECEIPT frames dropped as seq <= last seq seen
	Rewrites          uint64 // durable SENDs written again (reconnect or retryable error)
	EphemeralDropped  uint64 // ephemeral sends dropped: queue full or connection lost
	DeliveriesDropped uint64 // ephemeral deliveries dropped: Deliveries channel full
	AcksForgotten     uint64 // automatic acks dropped beyond MaxUnconfirmedAcks
	EventsDropped     uint64 // events dropped: Events channel full
}

type counters struct {
	connects, connectFailures, duplicates, rewrites atomic.Uint64
	ephemeralDropped, deliveriesDropped             atomic.Uint64
	acksForgotten, eventsDropped                    atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Connects: c.connects.Load(), ConnectFailures: c.connectFailures.Load(),
		Duplicates: c.duplicates.Load(), Rewrites: c.rewrites.Load(),
		EphemeralDropped: c.ephemeralDropped.Load(), DeliveriesDropped: c.deliveriesDropped.Load(),
		AcksForgotten: c.acksForgotten.Load(), EventsDropped: c.eventsDropped.Load(),
	}
}
