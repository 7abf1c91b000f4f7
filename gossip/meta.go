package gossip

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is the largest encoded [Meta] memberlist carries.
const MaxMetaSize = memberlist.MetaMaxSize

// metaVersion is the first byte of every encoded Meta. A decoder refuses
// other versions; fields added later within version 1 are appended, and a
// version-1 decoder ignores bytes after the fields it knows.
const metaVersion = 1

const (
	flagDraining = 1 << 0
	flagLeaving  = 1 << 1
)

// Meta is what a relay tells the cluster about itself. It is gossiped to
// every member, so it holds hints only, never commands.
type Meta struct {
	ID       string // relay id, unique in the deployment; the node's name in the cluster
	Region   string // region name, e.g. "eu-west"
	WS       string // public WebSocket address (URL or host:port), empty if none
	QUIC     string // public QUIC address (host:port), empty if none
	TURN     string // public TURN address (host:port), empty if none
	Software string // software version, e.g. "v0.4.1"
	Protocol uint32 // wire protocol version the relay speaks
	Load     uint32 // open client connections
	Capacity uint32 // client connections the relay takes (0: unstated)
	Peer     string // relay-to-relay link address (host:port, UDP), empty if none
	Draining bool   // the relay admits no new sessions
	// Leaving is set by Cluster.Leave, whatever UpdateMeta says: a member
	// that disappears after announcing it is reported as EventLeave, one
	// that disappears without as EventFailed. (memberlist itself does not
	// tell its delegates which of the two happened.)
	Leaving bool
}

// MarshalBinary encodes m (version 1):
//
//	version byte (1) | flags byte (bit 0: draining, bit 1: leaving) |
//	uvarint protocol | uvarint load | uvarint capacity |
//	6 × (uvarint length, bytes): id, region, ws, quic, turn, software
//	[uvarint length, bytes: peer — only when set]
//
// It returns a [*MetaSizeError] when the result exceeds [MaxMetaSize].
func (m Meta) MarshalBinary() ([]byte, error) {
	if m.ID == "" {
		return nil, fmt.Errorf("%w: empty id", ErrMetaFormat)
	}
	b := make([]byte, 0, 64+len(m.ID)+len(m.Region)+len(m.WS)+len(m.QUIC)+len(m.TURN)+len(m.Software))
	var flags byte
	if m.Draining {
		flags |= flagDraining
	}
	if m.Leaving {
		flags |= flagLeaving
	}
	b = append(b, metaVersion, flags)
	b = binary.AppendUvarint(b, uint64(m.Protocol))
	b = binary.AppendUvarint(b, uint64(m.Load))
	b = binary.AppendUvarint(b, uint64(m.Capacity))
	for _, s := range m.strings() {
		b = binary.AppendUvarint(b, uint64(len(*s)))
		b = append(b, *s...)
	}
	// Appended later in version 1 (older decoders ignore it), only when set.
	if m.Peer != "" {
		b = binary.AppendUvarint(b, uint64(len(m.Peer)))
		b = append(b, m.Peer...)
	}
	if len(b) > MaxMetaSize {
		return nil, &MetaSizeError{Size: len(b)}
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary produced. It accepts unknown
// flag bits and trailing bytes (later additions to version 1) and refuses
// other versions, truncated fields, invalid UTF-8 and an empty id.
func (m *Meta) UnmarshalBinary(b []byte) error {
	if len(b) > MaxMetaSize {
		return &MetaSizeError{Size: len(b)}
	}
	if len(b) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrMetaFormat, len(b))
	}
	if b[0] != metaVersion {
		return fmt.Errorf("%w: %d", ErrMetaVersion, b[0])
	}
	var out Meta
	out.Draining = b[1]&flagDraining != 0
	out.Leaving = b[1]&flagLeaving != 0
	b = b[2:]
	for _, p := range []*uint32{&out.Protocol, &out.Load, &out.Capacity} {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > math.MaxUint32 {
			return fmt.Errorf("%w: bad number", ErrMetaFormat)
		}
		*p = uint32(v)
		b = b[n:]
	}
	strs := out.strings()
	fields := strs[:]
	for i := 0; i < len(fields) || (i == len(fields) && len(b) > 0); i++ {
		s := &out.Peer // the optional 7th string
		if i < len(fields) {
			s = fields[i]
		}
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return fmt.Errorf("%w: bad string", ErrMetaFormat)
		}
		v := b[n : n+int(l)]
		if !utf8.Valid(v) {
			return fmt.Errorf("%w: string not UTF-8", ErrMetaFormat)
		}
		*s = string(v)
		b = b[n+int(l):]
	}
	if out.ID == "" {
		return fmt.Errorf("%w: empty id", ErrMetaFormat)
	}
	*m = out
	return nil
}

func (m *Meta) strings() [6]*string {
	return [6]*string{&m.ID, &m.Region, &m.WS, &m.QUIC, &m.TURN, &m.Software}
}
