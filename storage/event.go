package storage

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Events are records for the control plane that are not part of any
// session log: a session's lifecycle (opened on this relay, a participant
// joined or left, ended) and, later, usage (TURN). Each is written, synced,
// under its own outbox position, so the syncer ships it in outbox order
// with the log ranges and it survives a crash once AppendEvent returned.
//
// An event outbox value starts with a 0 byte (a log range's first byte is
// its session's length, never 0):
//
//	0x00 kind:u8 len(session):u8 session len(tenant):u8 tenant at:u64be(unix µs) data

// MaxEventData bounds an event's data.
const MaxEventData = 16 << 10

// Event is one control-plane record of a session.
type Event struct {
	Session string
	Tenant  string // the session's tenant (the log's tenant is in its metadata; an event may come first)
	Kind    uint8
	At      time.Time // kept to the microsecond
	Data    []byte    // opaque to the store (the relay writes JSON); no PHI
}

var storeIDKey = []byte("y/store-id")

// ErrInvalidEvent is returned by AppendEvent for an event it cannot store.
var ErrInvalidEvent = errors.New("storage: invalid event")

func eventRecord(ev Event) []byte {
	b := make([]byte, 0, 4+len(ev.Session)+len(ev.Tenant)+8+len(ev.Data))
	b = append(b, 0, ev.Kind, byte(len(ev.Session)))
	b = append(b, ev.Session...)
	b = append(b, byte(len(ev.Tenant)))
	b = append(b, ev.Tenant...)
	b = binary.BigEndian.AppendUint64(b, uint64(ev.At.UnixMicro()))
	return append(b, ev.Data...)
}

func decodeEventRecord(v []byte) (Event, error) {
	bad := func() (Event, error) { return Event{}, fmt.Errorf("%w: event record of %d bytes", ErrCorrupt, len(v)) }
	if len(v) < 4 || v[0] != 0 || v[2] == 0 || len(v) < 4+int(v[2]) {
		return bad()
	}
	n := int(v[2])
	ev := Event{Kind: v[1], Session: string(v[3 : 3+n])}
	v = v[3+n:]
	t := int(v[0])
	if len(v) < 1+t+8 {
		return bad()
	}
	ev.Tenant = string(v[1 : 1+t])
	v = v[1+t:]
	ev.At = time.UnixMicro(int64(binary.BigEndian.Uint64(v))).UTC()
	if d := v[8:]; len(d) > 0 {
		ev.Data = append([]byte(nil), d...)
	}
	return ev, nil
}

// AppendEvent durably records ev under the next outbox position and
// returns that position. It returns after the write is synced.
func (s *Store) AppendEvent(ctx context.Context, ev Event) (uint64, error) {
	if err := checkSession(ev.Session); err != nil {
		return 0, fmt.Errorf("storage: append event: %w", err)
	}
	if len(ev.Tenant) > MaxSessionLen {
		return 0, fmt.Errorf("%w: tenant of %d bytes", ErrInvalidEvent, len(ev.Tenant))
	}
	if ev.Kind == 0 || len(ev.Data) > MaxEventData {
		return 0, fmt.Errorf("%w: kind %d, %d bytes of data", ErrInvalidEvent, ev.Kind, len(ev.Data))
	}
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	if err := s.begin(ctx); err != nil {
		return 0, fmt.Errorf("storage: append event: %w", err)
	}
	defer s.exit()
	pos := s.assignOutbox()
	defer s.outboxDone(pos)
	b := s.db.NewBatch()
	_ = b.Set(outboxKey(pos), eventRecord(ev), nil)
	if err := s.apply(b, true); err != nil {
		return 0, fmt.Errorf("storage: append event: %w", err)
	}
	_ = b.Close()
	return pos, nil
}

// ID returns the store's identity: a random id created with the store,
// so that outbox positions (which restart with a new store) name a
// record uniquely together with it.
func (s *Store) ID() string { return s.id }

// loadID reads the store id, creating it on first open.
func (s *Store) loadID() error {
	v, ok, err := s.get(storeIDKey)
	if err != nil {
		return err
	}
	if ok {
		s.id = string(v)
		return nil
	}
	var r [8]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	b := s.db.NewBatch()
	_ = b.Set(storeIDKey, []byte(id), nil)
	if err := s.apply(b, true); err != nil {
		return err
	}
	_ = b.Close()
	s.id = id
	return nil
}
