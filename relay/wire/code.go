package wire

import "fmt"

// Code is an ERROR code. Codes are stable; their names are what logs and
// metric labels use.
type Code uint16

// Error codes.
const (
	CodeMalformed     Code = 1  // a frame could not be decoded (fatal)
	CodeTooLarge      Code = 2  // a frame exceeds the announced limit (fatal)
	CodeVersion       Code = 3  // no common protocol version (fatal)
	CodeUnauthorized  Code = 4  // token missing, malformed or badly signed (fatal)
	CodeExpired       Code = 5  // token expired (fatal)
	CodeForbidden     Code = 6  // token valid but not for this session or action
	CodeProtocol      Code = 7  // frame out of order, e.g. SEND before HELLO (fatal)
	CodeConflict      Code = 8  // config base version is stale
	CodeLimit         Code = 9  // config outside the device model's safety limits
	CodeBadPayload    Code = 10 // payload invalid for its kind
	CodeOverloaded    Code = 11 // a queue or rate limit is full; retry later
	CodeUnavailable   Code = 12 // storage or dependency failure; retry later
	CodeDraining      Code = 13 // relay is draining and admits no new sessions (fatal)
	CodeBadResume     Code = 14 // resume position beyond the session head (fatal)
	CodeUnknownSeq    Code = 15 // ACK for a seq that does not exist or is not yours
	CodeTimeout       Code = 16 // no HELLO in time, or keepalive missed (fatal)
	CodeIDReused      Code = 17 // client id reused with a different message
	CodeSessionClosed Code = 18 // the fitting session has ended (fatal)
	CodeStaleEpoch    Code = 19 // frame from an older ownership epoch (fatal)
)

var codeNames = map[Code]string{
	CodeMalformed: "malformed", CodeTooLarge: "too_large", CodeVersion: "version",
	CodeUnauthorized: "unauthorized", CodeExpired: "expired", CodeForbidden: "forbidden",
	CodeProtocol: "protocol", CodeConflict: "conflict", CodeLimit: "limit",
	CodeBadPayload: "bad_payload", CodeOverloaded: "overloaded",
	CodeUnavailable: "unavailable", CodeDraining: "draining",
	CodeBadResume: "bad_resume", CodeUnknownSeq: "unknown_seq", CodeTimeout: "timeout",
	CodeIDReused: "id_reused", CodeSessionClosed: "session_closed",
	CodeStaleEpoch: "stale_epoch",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code_%d", uint16(c))
}

// Retryable reports whether a client may retry the same request later.
func (c Code) Retryable() bool {
	return c == CodeOverloaded || c == CodeUnavailable || c == CodeDraining
}
