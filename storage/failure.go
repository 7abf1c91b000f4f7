package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// failure records the first unrecoverable error. Once set, the store refuses
// every call with ErrFailed (wrapping the cause).
type failure struct {
	err     atomic.Pointer[error]
	once    sync.Once
	log     *slog.Logger
	onFatal func(error)
	gauge   func() // marks the failed gauge; set by the metrics
}

// set records cause as the store's failure (the first cause wins) and returns
// the error every later call gets.
func (f *failure) set(cause error) error {
	err := fmt.Errorf("%w: %v", ErrFailed, cause)
	if f.err.CompareAndSwap(nil, &err) {
		f.once.Do(func() {
			f.log.Error("storage: store failed; refusing all operations until reopened", "err", cause)
			if f.gauge != nil {
				f.gauge()
			}
			if f.onFatal != nil {
				f.onFatal(err)
			}
		})
	}
	return *f.err.Load()
}

// get returns the recorded failure, or nil.
func (f *failure) get() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// pebbleLogger adapts Pebble's logger to slog. Pebble calls Fatalf when it
// cannot continue (notably when a WAL write or sync fails during a commit);
// the default logger would exit the process. This one records the failure
// and returns, and the store checks the failure after every commit, so the
// commit that hit it returns an error instead of nil.
type pebbleLogger struct {
	log  *slog.Logger
	fail *failure
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.fail.set(errors.New(fmt.Sprintf(format, args...)))
}
