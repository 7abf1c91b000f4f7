// Package peerwire is the message format of relay-to-relay links: the
// home relay of a session replicates its log to the session's replica,
// probes it, and fetches what it lacks. Messages travel one per QUIC
// stream, length-prefixed (4-byte big endian), as a list of fields:
//
//	field: tag:u8 uvarint len value
//
// uint fields are uvarints, strings and bytes are raw, an entry and a
// meta item are nested field lists. Unknown tags are skipped, so a newer
// peer may add fields. The decoder bounds every length and count and is
// fuzzed. Standard library only.
package peerwire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ALPN of the relay-to-relay link.
const ALPN = "stapes-peer/1"

// Message types.
const (
	TypeAuth      uint8 = 1 // dialer → listener: Node, MAC
	TypeAuthOK    uint8 = 2 // listener → dialer: Node, MAC
	TypeReplicate uint8 = 3 // home → replica: Session, Tenant, Epoch, Home, URL, Prev, Entries, Meta
	TypeProbe     uint8 = 4 // any → relay: Session; answered with Head, Epoch, Home
	TypeFetch     uint8 = 5 // home → replica: Session, After, Upto; answered with Entries
	TypeReply     uint8 = 6 // answer to Replicate, Probe, Fetch: Status, Head, Epoch, Home, URL, Entries
	// TypeForward (edge → home: Node, Session) turns its stream into a
	// forwarded client connection: the client's frames follow, each
	// length-prefixed; the home answers with frames, each prefixed by its
	// class byte and then length-prefixed (relay/forward.go). No reply.
	TypeForward uint8 = 7
)

// Reply statuses.
const (
	StatusOK      uint8 = 0
	StatusStale   uint8 = 1 // the sender's epoch is older than the receiver's (Epoch, Home say whose)
	StatusGap     uint8 = 2 // the receiver lacks entries before Prev (Head says how far it has)
	StatusAhead   uint8 = 3 // the receiver has entries after Prev the sender does not (Head)
	StatusUnknown uint8 = 4 // the receiver has nothing of the session
	StatusError   uint8 = 5 // the receiver failed (Reason)
	StatusDenied  uint8 = 6 // not authenticated, or a bad request
	StatusHandoff uint8 = 7 // probe: the home is draining and hands the session to its replica
)

// Limits a decoder enforces.
const (
	MaxMessage = 32 << 20
	MaxEntries = 4096
	MaxMeta    = 4096
	MaxID      = 256
	MaxFrame   = 16 << 20
)

// ErrMalformed is returned for any message that does not decode.
var ErrMalformed = errors.New("peerwire: malformed message")

// Entry is one session log entry.
type Entry struct {
	Seq   uint64
	Key   string // idempotency key ("" none)
	Hash  []byte // audit hash
	Frame []byte
}

// Meta is one metadata blob committed with the entries (nil Blob deletes).
type Meta struct {
	Name string
	Blob []byte
}

// Msg is any peer message; which fields matter depends on Type.
type Msg struct {
	Type    uint8
	Node    string
	MAC     []byte
	Session string
	Tenant  string
	Epoch   uint64
	Home    string
	URL     string
	Prev    uint64
	After   uint64
	Upto    uint64
	Head    uint64
	Status  uint8
	Reason  string
	Entries []Entry
	Meta    []Meta
}

const (
	tagType = iota + 1
	tagNode
	tagMAC
	tagSession
	tagTenant
	tagEpoch
	tagHome
	tagURL
	tagPrev
	tagAfter
	tagUpto
	tagHead
	tagStatus
	tagReason
	tagEntry
	tagMeta
)

// entry and meta subfields
const (
	tagSeq = iota + 1
	tagKey
	tagHash
	tagFrame
	tagName
	tagBlob
	tagDelete
)

func putBytes(dst []byte, tag byte, v []byte) []byte {
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func putString(dst []byte, tag byte, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func putUint(dst []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return dst
	}
	var b [binary.MaxVarintLen64]byte
	return putBytes(dst, tag, b[:binary.PutUvarint(b[:], v)])
}

// Append encodes m after dst (without the length prefix).
func Append(dst []byte, m *Msg) []byte {
	dst = putUint(dst, tagType, uint64(m.Type))
	dst = putString(dst, tagNode, m.Node)
	if len(m.MAC) > 0 {
		dst = putBytes(dst, tagMAC, m.MAC)
	}
	dst = putString(dst, tagSession, m.Session)
	dst = putString(dst, tagTenant, m.Tenant)
	dst = putUint(dst, tagEpoch, m.Epoch)
	dst = putString(dst, tagHome, m.Home)
	dst = putString(dst, tagURL, m.URL)
	dst = putUint(dst, tagPrev, m.Prev)
	dst = putUint(dst, tagAfter, m.After)
	dst = putUint(dst, tagUpto, m.Upto)
	dst = putUint(dst, tagHead, m.Head)
	dst = putUint(dst, tagStatus, uint64(m.Status))
	dst = putString(dst, tagReason, m.Reason)
	var sub []byte
	for _, e := range m.Entries {
		sub = putUint(sub[:0], tagSeq, e.Seq)
		sub = putString(sub, tagKey, e.Key)
		if len(e.Hash) > 0 {
			sub = putBytes(sub, tagHash, e.Hash)
		}
		sub = putBytes(sub, tagFrame, e.Frame)
		dst = putBytes(dst, tagEntry, sub)
	}
	for _, md := range m.Meta {
		sub = putString(sub[:0], tagName, md.Name)
		if md.Blob == nil {
			sub = putUint(sub, tagDelete, 1)
		} else {
			sub = putBytes(sub, tagBlob, md.Blob)
		}
		dst = putBytes(dst, tagMeta, sub)
	}
	return dst
}

// fields iterates over a field list.
func fields(b []byte, fn func(tag byte, v []byte) error) error {
	for len(b) > 0 {
		tag := b[0]
		n, k := binary.Uvarint(b[1:])
		if k <= 0 || n > uint64(len(b)-1-k) {
			return fmt.Errorf("%w: field %d length", ErrMalformed, tag)
		}
		v := b[1+k : 1+k+int(n)]
		b = b[1+k+int(n):]
		if err := fn(tag, v); err != nil {
			return err
		}
	}
	return nil
}

func uintOf(v []byte, tag byte) (uint64, error) {
	x, k := binary.Uvarint(v)
	if k <= 0 || k != len(v) || x > 1<<63-1 {
		return 0, fmt.Errorf("%w: field %d is not a uint", ErrMalformed, tag)
	}
	return x, nil
}

func idOf(v []byte, tag byte) (string, error) {
	if len(v) > MaxID {
		return "", fmt.Errorf("%w: field %d too long", ErrMalformed, tag)
	}
	return string(v), nil
}

// Decode parses a message. Byte slices in the result alias b.
func Decode(b []byte) (*Msg, error) {
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	m := &Msg{}
	err := fields(b, func(tag byte, v []byte) error {
		var err error
		var x uint64
		switch tag {
		case tagType, tagStatus:
			if x, err = uintOf(v, tag); err == nil && x > 255 {
				err = fmt.Errorf("%w: field %d out of range", ErrMalformed, tag)
			}
			if tag == tagType {
				m.Type = uint8(x)
			} else {
				m.Status = uint8(x)
			}
		case tagNode:
			m.Node, err = idOf(v, tag)
		case tagMAC:
			if len(v) > 64 {
				return fmt.Errorf("%w: mac too long", ErrMalformed)
			}
			if len(v) > 0 { // an empty MAC field is no MAC (Append omits it)
				m.MAC = v
			}
		case tagSession:
			m.Session, err = idOf(v, tag)
		case tagTenant:
			m.Tenant, err = idOf(v, tag)
		case tagHome:
			m.Home, err = idOf(v, tag)
		case tagURL:
			if len(v) > 2048 {
				return fmt.Errorf("%w: url too long", ErrMalformed)
			}
			m.URL = string(v)
		case tagReason:
			if len(v) > 1024 {
				return fmt.Errorf("%w: reason too long", ErrMalformed)
			}
			m.Reason = string(v)
		case tagEpoch:
			m.Epoch, err = uintOf(v, tag)
		case tagPrev:
			m.Prev, err = uintOf(v, tag)
		case tagAfter:
			m.After, err = uintOf(v, tag)
		case tagUpto:
			m.Upto, err = uintOf(v, tag)
		case tagHead:
			m.Head, err = uintOf(v, tag)
		case tagEntry:
			if len(m.Entries) >= MaxEntries {
				return fmt.Errorf("%w: too many entries", ErrMalformed)
			}
			var e Entry
			if err = decodeEntry(v, &e); err == nil {
				m.Entries = append(m.Entries, e)
			}
		case tagMeta:
			if len(m.Meta) >= MaxMeta {
				return fmt.Errorf("%w: too many meta items", ErrMalformed)
			}
			var md Meta
			if err = decodeMeta(v, &md); err == nil {
				m.Meta = append(m.Meta, md)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if m.Type == 0 {
		return nil, fmt.Errorf("%w: no type", ErrMalformed)
	}
	return m, nil
}

func decodeEntry(b []byte, e *Entry) error {
	err := fields(b, func(tag byte, v []byte) error {
		var err error
		switch tag {
		case tagSeq:
			e.Seq, err = uintOf(v, tag)
		case tagKey:
			e.Key, err = idOf(v, tag)
		case tagHash:
			if len(v) != 32 {
				return fmt.Errorf("%w: hash of %d bytes", ErrMalformed, len(v))
			}
			e.Hash = v
		case tagFrame:
			if len(v) > MaxFrame {
				return fmt.Errorf("%w: frame too long", ErrMalformed)
			}
			e.Frame = v
		}
		return err
	})
	if err == nil && (e.Seq == 0 || e.Frame == nil) {
		err = fmt.Errorf("%w: entry without seq or frame", ErrMalformed)
	}
	return err
}

func decodeMeta(b []byte, md *Meta) error {
	del := false
	err := fields(b, func(tag byte, v []byte) error {
		var err error
		switch tag {
		case tagName:
			if len(v) > 1024 {
				return fmt.Errorf("%w: meta name too long", ErrMalformed)
			}
			md.Name = string(v)
		case tagBlob:
			md.Blob = v
		case tagDelete:
			var x uint64
			x, err = uintOf(v, tag)
			del = x == 1
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case md.Name == "":
		return fmt.Errorf("%w: meta without name", ErrMalformed)
	case del && md.Blob != nil:
		return fmt.Errorf("%w: meta both set and deleted", ErrMalformed)
	case !del && md.Blob == nil:
		return fmt.Errorf("%w: meta without blob", ErrMalformed)
	}
	return nil
}
