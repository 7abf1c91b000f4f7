package client

import (
	"errors"
	"fmt"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Errors returned by the client. Errors from the relay are *Error.
var (
	ErrClosed          = errors.New("client: closed")
	ErrInvalidConfig   = errors.New("client: invalid config")
	ErrUnsupportedURL  = errors.New("client: unsupported URL")
	ErrTooManyPending  = errors.New("client: too many pending sends")
	ErrNotConnected    = errors.New("client: not connected")
	ErrQueueFull       = errors.New("client: ephemeral queue full")
	ErrTooLarge        = errors.New("client: message too large")
	ErrBadID           = errors.New("client: invalid client id")
	ErrDuplicateID     = errors.New("client: client id already pending")
	ErrMustBeDurable   = errors.New("client: config messages must be durable")
	ErrNotDurable      = errors.New("client: message is not durable")
	ErrNoReceipt       = errors.New("client: message finished without that receipt")
	ErrUnknownSeq      = errors.New("client: seq was not delivered to this client")
	ErrBadStage        = errors.New("client: invalid ack stage")
	ErrAlreadyFinal    = errors.New("client: seq already has another final ack")
	ErrProtocol        = errors.New("client: protocol violation by relay")
	ErrKeepalive       = errors.New("client: relay silent for 3 ping intervals")
	ErrStaleEpoch      = errors.New("client: relay holds an older session epoch")
	ErrSessionMismatch = errors.New("client: relay welcomed another session")
	ErrGoaway          = errors.New("client: relay sent GOAWAY")
	// ErrProbeUnsupported: the relay refused a PING before HELLO (an older
	// protocol revision); Probe cannot measure it.
	ErrProbeUnsupported = errors.New("client: relay does not answer RTT probes")
	// ErrNoCandidate: a Selector was given no candidate it could measure.
	ErrNoCandidate = errors.New("client: no relay could be measured")
)

// Error is an ERROR frame received from the relay. ClientID is set when the
// error is about one SEND; RefSeq when it is about one ACK. Use errors.As
// to reach it.
type Error struct {
	Code     wire.Code
	Message  string // the relay's text; it never carries patient data
	ClientID string
	RefSeq   uint64
	// ConfigVersion is the device's head config version, with
	// wire.CodeConflict: the base version to rebase the refused command
	// on. 0 when the head is 0 (the relay then omits it).
	ConfigVersion uint64
	// MinVersion and MaxVersion are the protocol versions the relay
	// speaks, with wire.CodeVersion; 0 when the relay did not say.
	MinVersion, MaxVersion uint64
	Fatal                  bool // the relay closes the connection after it
}

func (e *Error) Error() string {
	s := "client: relay error " + e.Code.String()
	if e.ClientID != "" {
		s += fmt.Sprintf(" (send %s)", e.ClientID)
	}
	if e.Code == wire.CodeVersion && e.MaxVersion != 0 {
		s += fmt.Sprintf(" (relay speaks %d..%d, client %d..%d)", e.MinVersion, e.MaxVersion, wire.VersionMin, wire.VersionMax)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// CodeOf returns the wire code of the first *Error in err's chain, or 0.
func CodeOf(err error) wire.Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return 0
}

// permanent reports whether a connection-level error cannot be fixed by
// reconnecting, so the client stops and surfaces it.
func permanent(err error) bool {
	if errors.Is(err, ErrSessionMismatch) {
		return true
	}
	switch CodeOf(err) {
	case wire.CodeUnauthorized, wire.CodeExpired, wire.CodeForbidden,
		wire.CodeVersion, wire.CodeBadResume, wire.CodeSessionClosed:
		return true
	}
	return false
}

func errorFromFrame(f *wire.Frame) *Error {
	e := &Error{Code: f.Code, Message: f.Message, ClientID: f.RefClientID, RefSeq: f.RefSeq, ConfigVersion: f.ConfigVersion, Fatal: f.Fatal}
	if f.Code == wire.CodeVersion {
		e.MinVersion, e.MaxVersion = f.MinVersion, f.MaxVersion
	}
	return e
}
