package relay

import (
	"errors"
	"fmt"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Sentinel errors.
var (
	ErrClosed   = errors.New("relay: server closed")
	ErrDraining = errors.New("relay: draining")
	ErrConfig   = errors.New("relay: invalid config")
)

// protoError is a typed protocol error to send to the peer as ERROR. Msg
// must never contain patient data: it is sent and logged.
type protoError struct {
	code  wire.Code
	msg   string
	fatal bool
	ref   string // client id of the SEND it is about
	seq   uint64 // seq of the ACK it is about
	cfgV  uint64 // device head version, on conflict
	minV  uint64 // relay's protocol versions, on version
	maxV  uint64
	// redirect, on a fatal error, is sent first as GOAWAY{redirect}: where
	// the session lives.
	redirect string
}

func (e *protoError) Error() string {
	return fmt.Sprintf("relay: %v: %s", e.code, e.msg)
}

func fatalf(code wire.Code, format string, args ...any) *protoError {
	return &protoError{code: code, msg: fmt.Sprintf(format, args...), fatal: true}
}

func rejectf(code wire.Code, ref, format string, args ...any) *protoError {
	return &protoError{code: code, msg: fmt.Sprintf(format, args...), ref: ref}
}

func (e *protoError) frame() []byte {
	return wire.Encode(&wire.Frame{
		Type: wire.TypeError, Code: e.code, Message: e.msg,
		RefClientID: e.ref, RefSeq: e.seq, ConfigVersion: e.cfgV, Fatal: e.fatal,
		MinVersion: e.minV, MaxVersion: e.maxV,
	})
}
