// Package syncproto is the wire format of relay → controld sync batches:
// committed session log entries with their audit-chain hashes, in outbox
// order. It depends on the standard library only and is fuzzed.
//
// A batch is the body of POST /v1/relay/sync (Content-Type
// application/x-stapes-sync):
//
//	magic "SSB1"
//	uvarint len(relay) relay          relay node id
//	uvarint pos                       outbox position of the batch's last record
//	uvarint count
//	count × record:
//	    uvarint len(tenant) tenant
//	    uvarint len(session) session
//	    uvarint seq
//	    hash[32]                      audit chain hash (all zero: none)
//	    uvarint len(frame) frame      the stored DELIVER or RECEIPT frame
//	optional, present only when the batch has events:
//	uvarint len(store) store          the relay store's id (positions restart with a new store)
//	uvarint count
//	count × event:
//	    uvarint pos                   the event's outbox position
//	    uvarint len(tenant) tenant
//	    uvarint len(session) session
//	    kind:u8                       1 opened, 2 joined, 3 left, 4 ended, 5 turn usage
//	    uvarint at                    unix microseconds
//	    uvarint len(data) data        JSON object, at most MaxEventData bytes
//
// Records of one session appear in ascending seq order. A controld that
// understands events accepts batches without them (an older relay); an
// older controld refuses batches with them, so upgrade controld first. The answer is JSON
// {"acked_pos": N, "inserted": M, "broken": [...]}: the relay may forget
// every outbox record up to N. Replaying a batch is harmless: the control
// plane inserts each (tenant, session, seq) once.
package syncproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ContentType of a batch body.
const ContentType = "application/x-stapes-sync"

// Limits a decoder enforces.
const (
	MaxRecords  = 100000
	MaxIDLen    = 128
	MaxFrameLen = 16 << 20
	HashLen     = 32
	MaxEvents   = 100000
	// MaxEventData bounds an event's data (storage.MaxEventData).
	MaxEventData = 16 << 10
)

// Event kinds.
const (
	EventOpened    uint8 = 1 // the session was opened on the relay
	EventJoined    uint8 = 2 // a participant connected
	EventLeft      uint8 = 3 // a participant's connection ended
	EventEnded     uint8 = 4 // the session ended on the relay
	EventTURNUsage uint8 = 5 // TURN usage of the session since the last such event
)

var magic = []byte("SSB1")

// ErrMalformed is returned for any batch that does not decode.
var ErrMalformed = errors.New("syncproto: malformed batch")

// Record is one committed log entry.
type Record struct {
	Tenant  string
	Session string
	Seq     uint64
	Hash    []byte // HashLen bytes, or nil
	Frame   []byte
}

// Event is one lifecycle or usage record of a session.
type Event struct {
	Pos     uint64
	Tenant  string
	Session string
	Kind    uint8
	At      int64 // unix microseconds
	Data    []byte
}

// Batch is one sync request.
type Batch struct {
	Relay   string
	Pos     uint64
	Records []Record
	Store   string // set when Events is not empty
	Events  []Event
}

// Size returns an upper bound of b's encoded length, to size buffers.
func Size(b *Batch) int {
	n := len(magic) + 3*binary.MaxVarintLen64 + len(b.Relay)
	for _, r := range b.Records {
		n += 4*binary.MaxVarintLen64 + len(r.Tenant) + len(r.Session) + HashLen + len(r.Frame)
	}
	if len(b.Events) > 0 {
		n += 2*binary.MaxVarintLen64 + len(b.Store)
		for _, e := range b.Events {
			n += 6*binary.MaxVarintLen64 + 1 + len(e.Tenant) + len(e.Session) + len(e.Data)
		}
	}
	return n
}

// Append encodes b after dst.
func Append(dst []byte, b *Batch) []byte {
	dst = append(dst, magic...)
	dst = appendString(dst, b.Relay)
	dst = binary.AppendUvarint(dst, b.Pos)
	dst = binary.AppendUvarint(dst, uint64(len(b.Records)))
	var zero [HashLen]byte
	for _, r := range b.Records {
		dst = appendString(dst, r.Tenant)
		dst = appendString(dst, r.Session)
		dst = binary.AppendUvarint(dst, r.Seq)
		if len(r.Hash) == HashLen {
			dst = append(dst, r.Hash...)
		} else {
			dst = append(dst, zero[:]...)
		}
		dst = binary.AppendUvarint(dst, uint64(len(r.Frame)))
		dst = append(dst, r.Frame...)
	}
	if len(b.Events) == 0 {
		return dst
	}
	dst = appendString(dst, b.Store)
	dst = binary.AppendUvarint(dst, uint64(len(b.Events)))
	for _, e := range b.Events {
		dst = binary.AppendUvarint(dst, e.Pos)
		dst = appendString(dst, e.Tenant)
		dst = appendString(dst, e.Session)
		dst = append(dst, e.Kind)
		dst = binary.AppendUvarint(dst, uint64(e.At))
		dst = binary.AppendUvarint(dst, uint64(len(e.Data)))
		dst = append(dst, e.Data...)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(what + " truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) id(what string) string {
	n := r.uvarint(what)
	if n > MaxIDLen {
		r.fail(what + " too long")
		return ""
	}
	return string(r.bytes(n, what))
}

// Decode parses a batch. Byte slices in the result alias b.
func Decode(b []byte) (Batch, error) {
	var out Batch
	if !bytes.HasPrefix(b, magic) {
		return out, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	r := &reader{b: b[len(magic):]}
	out.Relay = r.id("relay")
	out.Pos = r.uvarint("pos")
	n := r.uvarint("count")
	if n > MaxRecords {
		r.fail("too many records")
	}
	if r.err == nil {
		out.Records = make([]Record, 0, min(n, uint64(len(r.b)/36+1)))
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		var rec Record
		rec.Tenant = r.id("tenant")
		rec.Session = r.id("session")
		rec.Seq = r.uvarint("seq")
		rec.Hash = r.bytes(HashLen, "hash")
		fl := r.uvarint("frame length")
		if fl > MaxFrameLen {
			r.fail("frame too long")
		}
		rec.Frame = r.bytes(fl, "frame")
		if r.err == nil && (rec.Tenant == "" || rec.Session == "" || rec.Seq == 0) {
			r.fail("record without tenant, session or seq")
		}
		out.Records = append(out.Records, rec)
	}
	if r.err == nil && len(r.b) != 0 {
		r.events(&out)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return Batch{}, r.err
	}
	return out, nil
}

// events decodes the optional event section.
func (r *reader) events(out *Batch) {
	out.Store = r.id("store")
	n := r.uvarint("event count")
	switch {
	case r.err != nil:
		return
	case out.Store == "":
		r.fail("event section without a store id")
		return
	case n == 0 || n > MaxEvents:
		r.fail("event count out of range")
		return
	}
	out.Events = make([]Event, 0, min(n, uint64(len(r.b)/8+1)))
	for i := uint64(0); i < n && r.err == nil; i++ {
		var e Event
		e.Pos = r.uvarint("event pos")
		e.Tenant = r.id("event tenant")
		e.Session = r.id("event session")
		if k := r.bytes(1, "event kind"); k != nil {
			e.Kind = k[0]
		}
		e.At = int64(r.uvarint("event time"))
		dl := r.uvarint("event data length")
		if dl > MaxEventData {
			r.fail("event data too long")
		}
		e.Data = r.bytes(dl, "event data")
		if r.err == nil && (e.Pos == 0 || e.Tenant == "" || e.Session == "" || e.Kind == 0) {
			r.fail("event without pos, tenant, session or kind")
		}
		out.Events = append(out.Events, e)
	}
}
