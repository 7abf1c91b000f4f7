package control

import "errors"

// Errors.
var (
	ErrConfig     = errors.New("control: invalid config")
	ErrRejected   = errors.New("control: control plane refused the request")
	ErrIncomplete = errors.New("control: outbox record not fully readable yet")
	// ErrUnknownSession: controld has no such session.
	ErrUnknownSession = errors.New("control: session unknown to the control plane")
)
