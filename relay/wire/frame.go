package wire

import "fmt"

// Type is a frame type, the first byte of every frame.
type Type uint8

// Frame types. Values are fixed by docs/protocol.md; new types may be added,
// and a peer skips types it does not know.
const (
	TypeHello     Type = 0x01 // client → relay: token, versions, optional resume
	TypeWelcome   Type = 0x02 // relay → client: admission accepted
	TypeSend      Type = 0x03 // client → relay: a message for the session
	TypePersisted Type = 0x04 // relay → sender: durable message committed with seq
	TypeDeliver   Type = 0x05 // relay → recipient: a message
	TypeAck       Type = 0x06 // recipient → relay: received | applied | rejected
	TypeReceipt   Type = 0x07 // relay → participants: an ack, as a log entry
	TypePing      Type = 0x08 // either way
	TypePong      Type = 0x09 // answer to PING
	TypeGoaway    Type = 0x0a // relay → client: leave, reconnect elsewhere
	TypeError     Type = 0x0b // either way: typed error, fatal or about one SEND
)

var typeNames = map[Type]string{
	TypeHello: "HELLO", TypeWelcome: "WELCOME", TypeSend: "SEND",
	TypePersisted: "PERSISTED", TypeDeliver: "DELIVER", TypeAck: "ACK",
	TypeReceipt: "RECEIPT", TypePing: "PING", TypePong: "PONG",
	TypeGoaway: "GOAWAY", TypeError: "ERROR",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE(0x%02x)", uint8(t))
}

// Known reports whether t is a frame type this version understands.
func (t Type) Known() bool { _, ok := typeNames[t]; return ok }

// Tag identifies a field. A tag has the same meaning in every frame type.
type Tag uint8

// Field tags.
const (
	TagToken         Tag = 1  // bytes: signed session token (HELLO)
	TagMinVersion    Tag = 2  // uint: lowest protocol version the client speaks
	TagMaxVersion    Tag = 3  // uint: highest protocol version the client speaks
	TagCaps          Tag = 4  // uint: capability bits
	TagSession       Tag = 5  // string: fitting session id
	TagLastSeq       Tag = 6  // uint: resume position; presence means resume
	TagVersion       Tag = 7  // uint: negotiated protocol version (WELCOME)
	TagEpoch         Tag = 8  // uint: session ownership epoch
	TagHeadSeq       Tag = 9  // uint: highest committed seq of the session
	TagMaxFrame      Tag = 10 // uint: largest frame the relay accepts, bytes
	TagClientID      Tag = 11 // string: client message id (idempotency key)
	TagKind          Tag = 12 // uint: message kind
	TagFlags         Tag = 13 // uint: flag bits (FlagDurable, ...)
	TagPayload       Tag = 14 // bytes: message payload, opaque to the relay except config
	TagSeq           Tag = 15 // uint: session sequence number
	TagSender        Tag = 16 // string: short subject id of the sender
	TagStage         Tag = 17 // uint: ack stage
	TagReason        Tag = 18 // string: machine-readable reason (no patient data)
	TagRefSeq        Tag = 19 // uint: seq of the message a RECEIPT is about
	TagNonce         Tag = 20 // uint: PING/PONG nonce
	TagCode          Tag = 21 // uint: error code
	TagMessage       Tag = 22 // string: human-readable error text (no patient data)
	TagRedirect      Tag = 23 // string: where to reconnect (GOAWAY)
	TagAfterMillis   Tag = 24 // uint: GOAWAY grace period, ms
	TagConnID        Tag = 25 // string: connection id, for correlation in logs
	TagRole          Tag = 26 // uint: role of the sender (DELIVER/RECEIPT) or of the client (WELCOME)
	TagPingMillis    Tag = 27 // uint: relay's keepalive interval, ms (WELCOME)
	TagConfigVersion Tag = 28 // uint: device config version (WELCOME)
	TagConfig        Tag = 29 // bytes: device config snapshot, Config encoding (WELCOME)
	TagRefClientID   Tag = 30 // string: client id of the message a RECEIPT or ERROR is about
	TagFatal         Tag = 31 // uint: 1 when the connection closes after this ERROR
)

// Flag bits of TagFlags.
const (
	FlagDurable  uint64 = 1 << 0 // persist before PERSISTED, deliver exactly once
	FlagDegraded uint64 = 1 << 1 // PERSISTED: committed with reduced durability
)

// Kind is a message kind.
type Kind uint16

// Message kinds. Config is always durable and is checked by the relay
// (compare-and-set on the device version, safety limits). Kinds 64 and above
// are application-defined and opaque to the relay.
const (
	KindConfig    Kind = 1 // device-configuration command, payload is Config
	KindChat      Kind = 2 // chat text
	KindTelemetry Kind = 3 // live device telemetry sample
	KindSignal    Kind = 4 // WebRTC signalling: offer, answer, ICE candidate
	KindTyping    Kind = 5 // typing indicator
)

func (k Kind) String() string {
	switch k {
	case KindConfig:
		return "config"
	case KindChat:
		return "chat"
	case KindTelemetry:
		return "telemetry"
	case KindSignal:
		return "signal"
	case KindTyping:
		return "typing"
	}
	if k >= 64 {
		return "app"
	}
	return "unknown"
}

// Class is the delivery class of a kind: which QUIC stream carries it and
// which relay queue holds it.
type Class uint8

// Classes. On QUIC every client-opened bidirectional stream starts with one
// class byte.
const (
	ClassControl   Class = 0 // HELLO, WELCOME, PING, PONG, GOAWAY, fatal ERROR
	ClassDurable   Class = 1 // SEND(durable), PERSISTED, DELIVER(durable), ACK, RECEIPT
	ClassTelemetry Class = 2 // ephemeral telemetry
	ClassSignal    Class = 3 // ephemeral signalling, typing, app ephemeral
	NumClasses           = 4
)

func (c Class) String() string {
	switch c {
	case ClassControl:
		return "control"
	case ClassDurable:
		return "durable"
	case ClassTelemetry:
		return "telemetry"
	case ClassSignal:
		return "signal"
	}
	return "unknown"
}

// ClassOf returns the class a message travels in.
func ClassOf(k Kind, durable bool) Class {
	switch {
	case durable:
		return ClassDurable
	case k == KindTelemetry:
		return ClassTelemetry
	default:
		return ClassSignal
	}
}

// Stage is an acknowledgement stage.
type Stage uint8

// Ack stages. Applied and Rejected are final; a message has at most one
// final stage.
const (
	StageReceived Stage = 1 // the recipient's app has the message
	StageApplied  Stage = 2 // the hearing aid applied the config and read it back
	StageRejected Stage = 3 // the device or app refused it; Reason says why
)

func (s Stage) String() string {
	switch s {
	case StageReceived:
		return "received"
	case StageApplied:
		return "applied"
	case StageRejected:
		return "rejected"
	}
	return "unknown"
}

// Final reports whether s ends a message's life.
func (s Stage) Final() bool { return s == StageApplied || s == StageRejected }

// Role of a participant.
type Role uint8

// Roles.
const (
	RoleClinician Role = 1
	RolePatient   Role = 2 // the phone app connected to the hearing aid
	RoleObserver  Role = 3 // reads the session, may not send config
)

func (r Role) String() string {
	switch r {
	case RoleClinician:
		return "clinician"
	case RolePatient:
		return "patient"
	case RoleObserver:
		return "observer"
	}
	return "unknown"
}

// Protocol versions.
const (
	VersionMin uint64 = 1
	VersionMax uint64 = 1
)

// Capability bits of TagCaps.
const (
	CapResume   uint64 = 1 << 0 // client keeps last_seq and resumes
	CapReceipts uint64 = 1 << 1 // client wants RECEIPT frames
)

// Default limits. A relay may configure others and announces its frame
// limit in WELCOME.
const (
	DefaultMaxFrame = 64 << 10 // bytes per frame
	MaxTokenLen     = 4096
	MaxIDLen        = 128 // client ids, session ids, sender ids, conn ids
	MaxTextLen      = 512 // reasons, error messages, redirects
)

// Frame is one protocol frame. Which fields are meaningful depends on Type
// (docs/protocol.md has the table); the others are zero and not encoded.
type Frame struct {
	Type Type

	Token         []byte
	MinVersion    uint64
	MaxVersion    uint64
	Caps          uint64
	Session       string
	Resume        bool // LastSeq is present
	LastSeq       uint64
	Version       uint64
	Epoch         uint64
	HeadSeq       uint64
	MaxFrame      uint64
	ClientID      string
	Kind          Kind
	Flags         uint64
	Payload       []byte
	Seq           uint64
	Sender        string
	Stage         Stage
	Reason        string
	RefSeq        uint64
	Nonce         uint64
	Code          Code
	Message       string
	Redirect      string
	AfterMillis   uint64
	ConnID        string
	Role          Role
	PingMillis    uint64
	ConfigVersion uint64
	Config        []byte
	RefClientID   string
	Fatal         bool
}

// Durable reports whether the durable flag is set.
func (f *Frame) Durable() bool { return f.Flags&FlagDurable != 0 }
