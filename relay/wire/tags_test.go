package wire_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

// valueType is how a field's value bytes are read.
type valueType int

const (
	typeUint valueType = iota
	typeString
	typeBytes
)

func (t valueType) String() string {
	return [...]string{"uint", "string", "bytes"}[t]
}

// tagSpec is the test suite's independent statement of one field: its
// protocol name, value type, largest accepted value (uint) or length
// (string, bytes), and the Frame field that holds it. The doc test checks
// docs/protocol.md's field table against it, and the limit tests check the
// decoder against it.
type tagSpec struct {
	tag   wire.Tag
	name  string
	typ   valueType
	max   uint64
	field string // name of the wire.Frame field
}

const (
	maxU8   = 1<<8 - 1
	maxU16  = 1<<16 - 1
	maxU32  = 1<<32 - 1
	maxU63  = 1<<63 - 1
	maxU64  = 1<<64 - 1
	maxBlob = wire.DefaultMaxFrame << 8 // payload and config: 16 MiB
)

var tagSpecs = []tagSpec{
	{wire.TagToken, "token", typeBytes, wire.MaxTokenLen, "Token"},
	{wire.TagMinVersion, "min_version", typeUint, maxU16, "MinVersion"},
	{wire.TagMaxVersion, "max_version", typeUint, maxU16, "MaxVersion"},
	{wire.TagCaps, "caps", typeUint, maxU64, "Caps"},
	{wire.TagSession, "session", typeString, wire.MaxIDLen, "Session"},
	{wire.TagLastSeq, "last_seq", typeUint, maxU63, "LastSeq"},
	{wire.TagVersion, "version", typeUint, maxU16, "Version"},
	{wire.TagEpoch, "epoch", typeUint, maxU63, "Epoch"},
	{wire.TagHeadSeq, "head_seq", typeUint, maxU63, "HeadSeq"},
	{wire.TagMaxFrame, "max_frame", typeUint, maxU32, "MaxFrame"},
	{wire.TagClientID, "client_id", typeString, wire.MaxIDLen, "ClientID"},
	{wire.TagKind, "kind", typeUint, maxU16, "Kind"},
	{wire.TagFlags, "flags", typeUint, maxU64, "Flags"},
	{wire.TagPayload, "payload", typeBytes, maxBlob, "Payload"},
	{wire.TagSeq, "seq", typeUint, maxU63, "Seq"},
	{wire.TagSender, "sender", typeString, wire.MaxIDLen, "Sender"},
	{wire.TagStage, "stage", typeUint, maxU8, "Stage"},
	{wire.TagReason, "reason", typeString, wire.MaxTextLen, "Reason"},
	{wire.TagRefSeq, "ref_seq", typeUint, maxU63, "RefSeq"},
	{wire.TagNonce, "nonce", typeUint, maxU64, "Nonce"},
	{wire.TagCode, "code", typeUint, maxU16, "Code"},
	{wire.TagMessage, "message", typeString, wire.MaxTextLen, "Message"},
	{wire.TagRedirect, "redirect", typeString, wire.MaxTextLen, "Redirect"},
	{wire.TagAfterMillis, "after_ms", typeUint, maxU32, "AfterMillis"},
	{wire.TagConnID, "conn_id", typeString, wire.MaxIDLen, "ConnID"},
	{wire.TagRole, "role", typeUint, maxU8, "Role"},
	{wire.TagPingMillis, "ping_ms", typeUint, maxU32, "PingMillis"},
	{wire.TagConfigVersion, "config_version", typeUint, maxU63, "ConfigVersion"},
	{wire.TagConfig, "config", typeBytes, maxBlob, "Config"},
	{wire.TagRefClientID, "ref_client_id", typeString, wire.MaxIDLen, "RefClientID"},
	{wire.TagFatal, "fatal", typeUint, 1, "Fatal"},
}

func specOf(t wire.Tag) (tagSpec, bool) {
	for _, s := range tagSpecs {
		if s.tag == t {
			return s, true
		}
	}
	return tagSpec{}, false
}

// limitText is how docs/protocol.md's field table states a field's limit.
func (s tagSpec) limitText() string {
	switch s.typ {
	case typeUint:
		switch s.max {
		case 1:
			return "0 or 1"
		case maxU32:
			return "≤ 2^32-1"
		case maxU63:
			return "≤ 2^63-1"
		case maxU64:
			return "≤ 2^64-1"
		}
		return fmt.Sprintf("≤ %d", s.max)
	case typeString:
		return fmt.Sprintf("≤ %d bytes UTF-8", s.max)
	}
	if s.max == maxBlob {
		return "≤ 16 MiB and the frame limit"
	}
	return fmt.Sprintf("≤ %d bytes", s.max)
}

// setValue stores v (uint64, string or []byte) in the spec's Frame field.
func (s tagSpec) setValue(f *wire.Frame, v any) {
	fv := reflect.ValueOf(f).Elem().FieldByName(s.field)
	switch x := v.(type) {
	case uint64:
		switch s.tag {
		case wire.TagLastSeq:
			f.Resume = true
		case wire.TagFatal:
			f.Fatal = x != 0
			return
		}
		fv.SetUint(x)
	case string:
		fv.SetString(x)
	case []byte:
		fv.SetBytes(x)
	}
}

// value returns the spec's Frame field as uint64, string or []byte.
func (s tagSpec) value(f *wire.Frame) any {
	fv := reflect.ValueOf(f).Elem().FieldByName(s.field)
	switch fv.Kind() {
	case reflect.Bool:
		if fv.Bool() {
			return uint64(1)
		}
		return uint64(0)
	case reflect.String:
		return fv.String()
	case reflect.Slice:
		return fv.Bytes()
	}
	return fv.Uint()
}

// TestTagSpecsCoverFrame fails when Frame gains a field this suite does not
// know, so every field stays covered by the round-trip and limit tests and
// by the document.
func TestTagSpecsCoverFrame(t *testing.T) {
	covered := map[string]bool{"Type": true, "Resume": true}
	for _, s := range tagSpecs {
		covered[s.field] = true
		if _, ok := reflect.TypeFor[wire.Frame]().FieldByName(s.field); !ok {
			t.Errorf("tag %d %s: wire.Frame has no field %s", s.tag, s.name, s.field)
		}
	}
	ft := reflect.TypeFor[wire.Frame]()
	for i := range ft.NumField() {
		if name := ft.Field(i).Name; !covered[name] {
			t.Errorf("wire.Frame.%s has no entry in tagSpecs", name)
		}
	}
	seen := map[wire.Tag]bool{}
	for _, s := range tagSpecs {
		if seen[s.tag] {
			t.Errorf("tag %d listed twice", s.tag)
		}
		seen[s.tag] = true
	}
}
