package client

import (
	"context"
	"fmt"
	"sync"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Sent is the handle of one Send. Its methods are safe for concurrent use.
//
// A durable message is live until its final receipt from a participant
// other than an observer: applied or rejected for config, received (or a
// final stage) for other kinds. Until then the
// client keeps it, writes it again after every reconnect while it has no
// PERSISTED, and counts it against Config.MaxPending. It also ends when the
// relay refuses it (Err is an *Error with the code) or the client stops.
// An ephemeral message ends when it is written to a connection.
type Sent struct {
	id      string
	kind    wire.Kind
	durable bool

	mu       sync.Mutex // guards the fields below
	seq      uint64
	degraded bool
	receipts []Receipt
	err      error
	finished bool
	changed  chan struct{} // closed and replaced on every change
	done     chan struct{}
}

func newSent(id string, kind wire.Kind, durable bool) *Sent {
	return &Sent{id: id, kind: kind, durable: durable, changed: make(chan struct{}), done: make(chan struct{})}
}

// ClientID returns the message's client id, its idempotency key.
func (s *Sent) ClientID() string { return s.id }

// Kind returns the message kind.
func (s *Sent) Kind() wire.Kind { return s.kind }

// Durable reports whether the message is durable.
func (s *Sent) Durable() bool { return s.durable }

// Done is closed when the message ends: final receipt, refusal, client stop,
// or (ephemeral) once written.
func (s *Sent) Done() <-chan struct{} { return s.done }

// Err returns why the message failed, or nil while it is live or after it
// ended normally. A rejected config is a normal end (see Final).
func (s *Sent) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Receipts returns the receipts seen so far, in arrival order.
func (s *Sent) Receipts() []Receipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Receipt(nil), s.receipts...)
}

// Persisted waits for PERSISTED and returns the message's seq. The second
// result reports a commit with reduced durability (FlagDegraded).
//
// If the relay refuses the message, err is an *Error (errors.As) with the
// code and ClientID = the message's id. For a config command whose base
// version is not the device's head, Code is wire.CodeConflict and
// ConfigVersion is the head (0 when the relay omits it): rebase the command
// on it and send it again under a new id (docs/protocol.md §13.2).
func (s *Sent) Persisted(ctx context.Context) (seq uint64, degraded bool, err error) {
	if !s.durable {
		return 0, false, ErrNotDurable
	}
	err = s.await(ctx, func() (bool, error) {
		if s.seq != 0 {
			seq, degraded = s.seq, s.degraded
			return true, nil
		}
		return s.finished, s.err
	})
	return seq, degraded, err
}

// Wait waits for the first receipt at stage. If the message ends without
// one it returns the message's error, or ErrNoReceipt.
func (s *Sent) Wait(ctx context.Context, stage wire.Stage) (Receipt, error) {
	if !s.durable {
		return Receipt{}, ErrNotDurable
	}
	var r Receipt
	err := s.await(ctx, func() (bool, error) {
		for _, x := range s.receipts {
			if x.Stage == stage {
				r = x
				return true, nil
			}
		}
		if !s.finished {
			return false, nil
		}
		if s.err != nil {
			return true, s.err
		}
		return true, fmt.Errorf("%w: %v", ErrNoReceipt, stage)
	})
	return r, err
}

// Final waits for the receipt that ends the message (for config: applied or
// rejected — check Stage) and returns it, or the message's error.
func (s *Sent) Final(ctx context.Context) (Receipt, error) {
	if !s.durable {
		return Receipt{}, ErrNotDurable
	}
	var r Receipt
	err := s.await(ctx, func() (bool, error) {
		if !s.finished {
			return false, nil
		}
		if s.err == nil && len(s.receipts) > 0 {
			r = s.receipts[len(s.receipts)-1]
		}
		return true, s.err
	})
	return r, err
}

func (s *Sent) await(ctx context.Context, ready func() (bool, error)) error {
	for {
		s.mu.Lock()
		ok, err := ready()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notify wakes waiters. Caller holds s.mu.
func (s *Sent) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Sent) persisted(seq uint64, degraded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seq == 0 {
		s.seq, s.degraded = seq, degraded
		s.notify()
	}
}

// receipt records r and reports whether it is the message's final receipt.
// An observer's receipt is recorded but never final: observers are not the
// side a message is for.
func (s *Sent) receipt(r Receipt) (final bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.receipts = append(s.receipts, r)
	s.notify()
	if r.Role == wire.RoleObserver {
		return false
	}
	return r.Stage.Final() || (s.kind != wire.KindConfig && r.Stage == wire.StageReceived)
}

// finish ends the message with err (nil: ended normally). Idempotent.
func (s *Sent) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	s.finished, s.err = true, err
	s.notify()
	close(s.done)
}
