package call

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"
)

// Signal types.
const (
	TypeOffer     = "offer"     // caller → callee: SDP offer (again until answered)
	TypeAnswer    = "answer"    // callee → caller: SDP answer (again for each repeated offer)
	TypeCandidate = "candidate" // either way: one trickled ICE candidate
	TypeBye       = "bye"       // either way: hang up; Sent holds the packets sent per stream
)

// Limits on a decoded Signal.
const (
	MaxCallIDLen = 64
	MaxSDPLen    = 60 << 10 // below the session protocol's payload limit
	maxCandLen   = 1024
)

// Signal is one signalling message, the JSON payload of a wire.KindSignal
// message.
type Signal struct {
	Type      string                   `json:"type"`
	Call      string                   `json:"call"` // random id chosen by the caller
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Sent      map[string]uint64        `json:"sent,omitempty"` // bye: RTP packets sent per stream ("audio", "video")
}

// Encode returns s as a payload.
func (s *Signal) Encode() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// DecodeSignal parses and checks a payload.
func DecodeSignal(b []byte) (Signal, error) {
	var s Signal
	if len(b) > MaxSDPLen+4096 {
		return s, fmt.Errorf("%w: %d bytes", ErrBadSignal, len(b))
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return Signal{}, fmt.Errorf("%w: %v", ErrBadSignal, err)
	}
	if err := s.check(); err != nil {
		return Signal{}, err
	}
	return s, nil
}

func (s *Signal) check() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrBadSignal, fmt.Sprintf(f, a...)) }
	if s.Call == "" || len(s.Call) > MaxCallIDLen || !utf8.ValidString(s.Call) {
		return bad("call id of %d bytes", len(s.Call))
	}
	if len(s.SDP) > MaxSDPLen {
		return bad("sdp of %d bytes", len(s.SDP))
	}
	switch s.Type {
	case TypeOffer, TypeAnswer:
		if s.SDP == "" {
			return bad("%s without sdp", s.Type)
		}
	case TypeCandidate:
		if s.Candidate == nil || len(s.Candidate.Candidate) > maxCandLen {
			return bad("candidate missing or too long")
		}
	case TypeBye:
		if len(s.Sent) > 8 {
			return bad("bye with %d streams", len(s.Sent))
		}
	default:
		return bad("type %q", s.Type)
	}
	return nil
}
