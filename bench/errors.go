package bench

import "errors"

var (
	// ErrConfig reports an invalid load, goal or report setting.
	ErrConfig = errors.New("bench: invalid configuration")
	// ErrNoProc reports a process that /proc does not know (gone, or not Linux).
	ErrNoProc = errors.New("bench: no such process")
)
