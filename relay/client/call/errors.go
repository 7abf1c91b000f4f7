package call

import "errors"

// Sentinel errors.
var (
	ErrBadConfig    = errors.New("call: bad config")
	ErrBadSignal    = errors.New("call: bad signal")
	ErrNoAnswer     = errors.New("call: no answer")
	ErrNotConnected = errors.New("call: media did not connect")
	ErrNotRelayed   = errors.New("call: selected path is not relayed")
)
