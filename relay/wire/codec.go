package wire

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Append encodes f and appends it to dst. Zero-valued fields are omitted,
// except LastSeq when Resume is set.
func Append(dst []byte, f *Frame) []byte {
	dst = append(dst, byte(f.Type))
	dst = appendBytes(dst, TagToken, f.Token)
	dst = appendUint(dst, TagMinVersion, f.MinVersion)
	dst = appendUint(dst, TagMaxVersion, f.MaxVersion)
	dst = appendUint(dst, TagCaps, f.Caps)
	dst = appendString(dst, TagSession, f.Session)
	if f.Resume {
		dst = appendUintAlways(dst, TagLastSeq, f.LastSeq)
	}
	dst = appendUint(dst, TagVersion, f.Version)
	dst = appendUint(dst, TagEpoch, f.Epoch)
	dst = appendUint(dst, TagHeadSeq, f.HeadSeq)
	dst = appendUint(dst, TagMaxFrame, f.MaxFrame)
	dst = appendString(dst, TagClientID, f.ClientID)
	dst = appendUint(dst, TagKind, uint64(f.Kind))
	dst = appendUint(dst, TagFlags, f.Flags)
	dst = appendBytes(dst, TagPayload, f.Payload)
	dst = appendUint(dst, TagSeq, f.Seq)
	dst = appendString(dst, TagSender, f.Sender)
	dst = appendUint(dst, TagStage, uint64(f.Stage))
	dst = appendString(dst, TagReason, f.Reason)
	dst = appendUint(dst, TagRefSeq, f.RefSeq)
	dst = appendUint(dst, TagNonce, f.Nonce)
	dst = appendUint(dst, TagCode, uint64(f.Code))
	dst = appendString(dst, TagMessage, f.Message)
	dst = appendString(dst, TagRedirect, f.Redirect)
	dst = appendUint(dst, TagAfterMillis, f.AfterMillis)
	dst = appendString(dst, TagConnID, f.ConnID)
	dst = appendUint(dst, TagRole, uint64(f.Role))
	dst = appendUint(dst, TagPingMillis, f.PingMillis)
	dst = appendUint(dst, TagConfigVersion, f.ConfigVersion)
	dst = appendBytes(dst, TagConfig, f.Config)
	dst = appendString(dst, TagRefClientID, f.RefClientID)
	if f.Fatal {
		dst = appendUintAlways(dst, TagFatal, 1)
	}
	return dst
}

// Encode returns the encoding of f.
func Encode(f *Frame) []byte {
	return Append(make([]byte, 0, 64+len(f.Payload)+len(f.Token)+len(f.Config)), f)
}

func appendUint(dst []byte, t Tag, v uint64) []byte {
	if v == 0 {
		return dst
	}
	return appendUintAlways(dst, t, v)
}

func appendUintAlways(dst []byte, t Tag, v uint64) []byte {
	dst = append(dst, byte(t), byte(uvarintLen(v)))
	return binary.AppendUvarint(dst, v)
}

func appendString(dst []byte, t Tag, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, byte(t))
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst []byte, t Tag, b []byte) []byte {
	if len(b) == 0 {
		return dst
	}
	dst = append(dst, byte(t))
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// Decode parses one frame. maxFrame bounds len(b) (0 means DefaultMaxFrame).
// Byte fields of the result alias b. For a frame type it does not know,
// Decode returns the Type and an error wrapping ErrUnknownType; the caller
// skips such frames.
func Decode(b []byte, maxFrame int) (Frame, error) {
	var f Frame
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if len(b) == 0 {
		return f, ErrEmpty
	}
	if len(b) > maxFrame {
		return f, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), maxFrame)
	}
	f.Type = Type(b[0])
	if !f.Type.Known() {
		return f, fmt.Errorf("%w: 0x%02x", ErrUnknownType, uint8(f.Type))
	}
	var seen [32]bool // tags below 32 that appeared, to refuse duplicates
	rest := b[1:]
	for len(rest) > 0 {
		tag := Tag(rest[0])
		n, k, err := fieldLen(rest[1:])
		if err != nil {
			return f, &FieldError{f.Type, tag, err}
		}
		rest = rest[1+k:]
		if n > uint64(len(rest)) {
			return f, &FieldError{f.Type, tag, ErrTruncated}
		}
		val := rest[:n]
		rest = rest[n:]
		if int(tag) < len(seen) {
			if seen[tag] {
				return f, &FieldError{f.Type, tag, fmt.Errorf("%w: duplicate field", ErrMalformed)}
			}
			seen[tag] = true
		}
		if err := f.setField(tag, val); err != nil {
			return f, &FieldError{f.Type, tag, err}
		}
	}
	return f, nil
}

func (f *Frame) setField(tag Tag, val []byte) error {
	var err error
	switch tag {
	case TagToken:
		f.Token, err = bytesField(val, MaxTokenLen)
	case TagMinVersion:
		f.MinVersion, err = uintField(val, 1<<16-1)
	case TagMaxVersion:
		f.MaxVersion, err = uintField(val, 1<<16-1)
	case TagCaps:
		f.Caps, err = uintField(val, 1<<64-1)
	case TagSession:
		f.Session, err = stringField(val, MaxIDLen)
	case TagLastSeq:
		f.Resume = true
		f.LastSeq, err = uintField(val, 1<<63-1)
	case TagVersion:
		f.Version, err = uintField(val, 1<<16-1)
	case TagEpoch:
		f.Epoch, err = uintField(val, 1<<63-1)
	case TagHeadSeq:
		f.HeadSeq, err = uintField(val, 1<<63-1)
	case TagMaxFrame:
		f.MaxFrame, err = uintField(val, 1<<32-1)
	case TagClientID:
		f.ClientID, err = stringField(val, MaxIDLen)
	case TagKind:
		var v uint64
		v, err = uintField(val, 1<<16-1)
		f.Kind = Kind(v)
	case TagFlags:
		f.Flags, err = uintField(val, 1<<64-1)
	case TagPayload:
		f.Payload, err = bytesField(val, DefaultMaxFrame<<8)
	case TagSeq:
		f.Seq, err = uintField(val, 1<<63-1)
	case TagSender:
		f.Sender, err = stringField(val, MaxIDLen)
	case TagStage:
		var v uint64
		v, err = uintField(val, 1<<8-1)
		f.Stage = Stage(v)
	case TagReason:
		f.Reason, err = stringField(val, MaxTextLen)
	case TagRefSeq:
		f.RefSeq, err = uintField(val, 1<<63-1)
	case TagNonce:
		f.Nonce, err = uintField(val, 1<<64-1)
	case TagCode:
		var v uint64
		v, err = uintField(val, 1<<16-1)
		f.Code = Code(v)
	case TagMessage:
		f.Message, err = stringField(val, MaxTextLen)
	case TagRedirect:
		f.Redirect, err = stringField(val, MaxTextLen)
	case TagAfterMillis:
		f.AfterMillis, err = uintField(val, 1<<32-1)
	case TagConnID:
		f.ConnID, err = stringField(val, MaxIDLen)
	case TagRole:
		var v uint64
		v, err = uintField(val, 1<<8-1)
		f.Role = Role(v)
	case TagPingMillis:
		f.PingMillis, err = uintField(val, 1<<32-1)
	case TagConfigVersion:
		f.ConfigVersion, err = uintField(val, 1<<63-1)
	case TagConfig:
		f.Config, err = bytesField(val, DefaultMaxFrame<<8)
	case TagRefClientID:
		f.RefClientID, err = stringField(val, MaxIDLen)
	case TagFatal:
		var v uint64
		v, err = uintField(val, 1)
		f.Fatal = v == 1
	default:
		// Unknown field: skipped, as the protocol requires.
	}
	return err
}

// fieldLen reads a field length: a canonical (shortest) uvarint. An
// unfinished length is truncated; an over-long or padded one is malformed.
func fieldLen(b []byte) (n uint64, k int, err error) {
	n, k = binary.Uvarint(b)
	switch {
	case k == 0:
		return 0, 0, ErrTruncated
	case k < 0 || uvarintLen(n) != k:
		return 0, 0, fmt.Errorf("%w: bad length", ErrMalformed)
	}
	return n, k, nil
}

// uintField decodes a canonical uvarint that fills val exactly.
func uintField(val []byte, max uint64) (uint64, error) {
	v, k := binary.Uvarint(val)
	if k <= 0 || k != len(val) || uvarintLen(v) != k {
		return 0, fmt.Errorf("%w: bad integer", ErrMalformed)
	}
	if v > max {
		return 0, fmt.Errorf("%w: integer out of range", ErrMalformed)
	}
	return v, nil
}

func stringField(val []byte, max int) (string, error) {
	if len(val) > max {
		return "", fmt.Errorf("%w: string of %d bytes, limit %d", ErrMalformed, len(val), max)
	}
	if !utf8.Valid(val) {
		return "", fmt.Errorf("%w: string is not UTF-8", ErrMalformed)
	}
	return string(val), nil
}

func bytesField(val []byte, max int) ([]byte, error) {
	if len(val) > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(val), max)
	}
	return val, nil
}
