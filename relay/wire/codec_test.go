package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

// framesEqual compares frames field by field; an empty byte field equals a
// nil one (the encoding cannot tell them apart).
func framesEqual(a, b *wire.Frame) bool {
	x, y := *a, *b
	for _, p := range []*[]byte{&x.Token, &x.Payload, &x.Config, &y.Token, &y.Payload, &y.Config} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	return reflect.DeepEqual(x, y)
}

// field encodes one tag-length-value field.
func field(tag wire.Tag, val ...byte) []byte {
	b := append([]byte{byte(tag)}, binary.AppendUvarint(nil, uint64(len(val)))...)
	return append(b, val...)
}

// uvarint returns the canonical uvarint encoding of v.
func uvarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

// frameBytes is a type byte followed by fields.
func frameBytes(t wire.Type, fields ...[]byte) []byte {
	return append([]byte{byte(t)}, bytes.Join(fields, nil)...)
}

func TestRoundTrip(t *testing.T) {
	cfg := exampleConfigBytes
	tests := []struct {
		name string
		f    wire.Frame
	}{
		{"HELLO fresh", wire.Frame{Type: wire.TypeHello, Token: []byte("tok"), MinVersion: 1, MaxVersion: 3, Caps: wire.CapResume | wire.CapReceipts}},
		{"HELLO resume", wire.Frame{Type: wire.TypeHello, Token: []byte("tok"), MinVersion: 1, MaxVersion: 1,
			Caps: wire.CapResume, Session: "fs_1", Resume: true, LastSeq: 1 << 40, Epoch: 9}},
		{"WELCOME", wire.Frame{Type: wire.TypeWelcome, Version: 1, Session: "fs_1", Epoch: 2, HeadSeq: 300,
			MaxFrame: 1 << 20, ConnID: "cn_1", Role: wire.RolePatient, PingMillis: 15000,
			ConfigVersion: 17, Config: cfg}},
		{"SEND durable config", wire.Frame{Type: wire.TypeSend, ClientID: "c1", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: cfg}},
		{"SEND ephemeral app kind", wire.Frame{Type: wire.TypeSend, Kind: 64000, Payload: []byte{0, 1, 2}}},
		{"PERSISTED degraded", wire.Frame{Type: wire.TypePersisted, ClientID: "c1", Seq: 1<<63 - 1, Flags: wire.FlagDegraded}},
		{"DELIVER durable", wire.Frame{Type: wire.TypeDeliver, Seq: 5, Sender: "clin_1", Role: wire.RoleClinician,
			Kind: wire.KindChat, Flags: wire.FlagDurable, ClientID: "c1", Payload: []byte("hi")}},
		{"DELIVER ephemeral", wire.Frame{Type: wire.TypeDeliver, Sender: "pat_1", Role: wire.RolePatient,
			Kind: wire.KindTelemetry, Payload: []byte{9}}},
		{"ACK rejected", wire.Frame{Type: wire.TypeAck, Seq: 5, Stage: wire.StageRejected, Reason: "readback_mismatch"}},
		{"RECEIPT", wire.Frame{Type: wire.TypeReceipt, Seq: 6, RefSeq: 5, RefClientID: "c1", Stage: wire.StageReceived,
			Reason: "ok", Sender: "pat_1", Role: wire.RolePatient, Kind: wire.KindChat}},
		{"PING", wire.Frame{Type: wire.TypePing, Nonce: 1<<64 - 1}},
		{"PONG", wire.Frame{Type: wire.TypePong, Nonce: 1}},
		{"GOAWAY", wire.Frame{Type: wire.TypeGoaway, Code: wire.CodeDraining, Redirect: "wss://r2.example/v1/connect", AfterMillis: 1<<32 - 1}},
		{"ERROR per SEND", wire.Frame{Type: wire.TypeError, Code: wire.CodeConflict, Message: "stale", RefClientID: "c1", ConfigVersion: 18}},
		{"ERROR per ACK", wire.Frame{Type: wire.TypeError, Code: wire.CodeUnknownSeq, RefSeq: 77}},
		{"ERROR fatal", wire.Frame{Type: wire.TypeError, Code: wire.CodeVersion, MinVersion: 1, MaxVersion: 1, Fatal: true}},
		{"every field", allFields()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := wire.Encode(&tt.f)
			got, err := wire.Decode(b, 0)
			if err != nil {
				t.Fatalf("Decode(Encode(f)): %v", err)
			}
			if !framesEqual(&got, &tt.f) {
				t.Errorf("round trip:\ngot  %+v\nwant %+v", got, tt.f)
			}
			if again := wire.Append([]byte("prefix"), &got); !bytes.Equal(again[6:], b) || string(again[:6]) != "prefix" {
				t.Errorf("Append(prefix, decoded) = %x, want prefix+%x", again, b)
			}
		})
	}
}

// allFields returns a frame with every field set to a non-zero value.
func allFields() wire.Frame {
	f := wire.Frame{Type: wire.TypeDeliver}
	for i, s := range tagSpecs {
		switch s.typ {
		case typeUint:
			s.setValue(&f, min(uint64(i+1), s.max))
		case typeString:
			s.setValue(&f, s.name)
		case typeBytes:
			s.setValue(&f, []byte(s.name))
		}
	}
	return f
}

// TestFieldEncoding pins the exact bytes of each field and checks the
// decoder accepts each field at its limit.
func TestFieldEncoding(t *testing.T) {
	for _, s := range tagSpecs {
		t.Run(s.name, func(t *testing.T) {
			var val any
			var want []byte
			switch s.typ {
			case typeUint:
				val = s.max
				want = field(s.tag, uvarint(s.max)...)
			case typeString:
				v := strings.Repeat("é", int(s.max)/2) // multi-byte UTF-8 at the byte limit
				val, want = v, field(s.tag, []byte(v)...)
			case typeBytes:
				v := bytes.Repeat([]byte{0xff}, int(s.max))
				val, want = v, field(s.tag, v...)
			}
			var f wire.Frame
			f.Type = wire.TypeSend
			s.setValue(&f, val)
			want = append([]byte{byte(wire.TypeSend)}, want...)
			got := wire.Encode(&f)
			if !bytes.Equal(got, want) {
				n := min(len(got), 32)
				t.Fatalf("Encode = %x…(%d bytes), want %x…(%d bytes)", got[:n], len(got), want[:min(len(want), 32)], len(want))
			}
			d, err := wire.Decode(got, len(got))
			if err != nil {
				t.Fatalf("Decode at limit: %v", err)
			}
			if !reflect.DeepEqual(s.value(&d), val) {
				t.Errorf("decoded %s differs from %v", s.name, s.max)
			}
		})
	}
}

// TestFieldLimits checks the decoder refuses each field just above its
// limit, with a FieldError naming the frame type and tag.
func TestFieldLimits(t *testing.T) {
	for _, s := range tagSpecs {
		if s.typ == typeUint && s.max == maxU64 {
			continue // every uint64 is valid
		}
		t.Run(s.name, func(t *testing.T) {
			var b []byte
			switch s.typ {
			case typeUint:
				b = frameBytes(wire.TypeAck, field(s.tag, uvarint(s.max+1)...))
			default:
				b = frameBytes(wire.TypeAck, field(s.tag, bytes.Repeat([]byte{'a'}, int(s.max)+1)...))
			}
			_, err := wire.Decode(b, len(b))
			checkFieldError(t, err, wire.ErrMalformed, wire.TypeAck, s.tag)
		})
	}
}

func checkFieldError(t *testing.T, err, want error, typ wire.Type, tag wire.Tag) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	var fe *wire.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v (%T), want a *wire.FieldError", err, err)
	}
	if fe.Type != typ || fe.Tag != tag {
		t.Errorf("FieldError type %v tag %d, want type %v tag %d", fe.Type, fe.Tag, typ, tag)
	}
}

func TestZeroValuesOmitted(t *testing.T) {
	for typ := range 256 {
		typ := wire.Type(typ)
		if !typ.Known() {
			continue
		}
		t.Run(typ.String(), func(t *testing.T) {
			f := wire.Frame{Type: typ, Token: []byte{}, Payload: []byte{}, Config: []byte{}}
			if got := wire.Encode(&f); !bytes.Equal(got, []byte{byte(typ)}) {
				t.Errorf("Encode(zero %v) = %x, want %02x", typ, got, byte(typ))
			}
		})
	}
	// Explicit zero values are accepted and read as absent.
	b := frameBytes(wire.TypeSend, field(wire.TagSeq, 0), field(wire.TagKind, 0), field(wire.TagFatal, 0),
		field(wire.TagSession), field(wire.TagPayload))
	got, err := wire.Decode(b, 0)
	if err != nil {
		t.Fatalf("Decode(explicit zeros): %v", err)
	}
	if want := (wire.Frame{Type: wire.TypeSend}); !framesEqual(&got, &want) {
		t.Errorf("Decode(explicit zeros) = %+v, want %+v", got, want)
	}
}

func TestResume(t *testing.T) {
	tests := []struct {
		name    string
		f       wire.Frame
		enc     []byte
		resume  bool
		lastSeq uint64
	}{
		{"absent", wire.Frame{Type: wire.TypeHello}, frameBytes(wire.TypeHello), false, 0},
		{"last_seq 0", wire.Frame{Type: wire.TypeHello, Resume: true}, frameBytes(wire.TypeHello, field(wire.TagLastSeq, 0)), true, 0},
		{"last_seq 300", wire.Frame{Type: wire.TypeHello, Resume: true, LastSeq: 300},
			frameBytes(wire.TypeHello, field(wire.TagLastSeq, 0xac, 0x02)), true, 300},
		// LastSeq without Resume is not encoded: Resume is what says "present".
		{"LastSeq without Resume", wire.Frame{Type: wire.TypeHello, LastSeq: 5}, frameBytes(wire.TypeHello), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := wire.Encode(&tt.f)
			if !bytes.Equal(b, tt.enc) {
				t.Errorf("Encode = %x, want %x", b, tt.enc)
			}
			got, err := wire.Decode(b, 0)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.Resume != tt.resume || got.LastSeq != tt.lastSeq {
				t.Errorf("Decode: Resume=%v LastSeq=%d, want Resume=%v LastSeq=%d", got.Resume, got.LastSeq, tt.resume, tt.lastSeq)
			}
		})
	}
}

func TestFatal(t *testing.T) {
	f := wire.Frame{Type: wire.TypeError, Code: wire.CodeTimeout, Fatal: true}
	want := frameBytes(wire.TypeError, field(wire.TagCode, 16), field(wire.TagFatal, 1))
	if got := wire.Encode(&f); !bytes.Equal(got, want) {
		t.Errorf("Encode = %x, want %x", got, want)
	}
	got, err := wire.Decode(want, 0)
	if err != nil || !got.Fatal {
		t.Errorf("Decode = Fatal %v, err %v; want Fatal true, nil", got.Fatal, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	long := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	tests := []struct {
		name     string
		in       []byte
		maxFrame int
		want     error
		tag      wire.Tag // FieldError tag when non-zero
	}{
		{"empty", nil, 0, wire.ErrEmpty, 0},
		{"empty slice", []byte{}, 0, wire.ErrEmpty, 0},
		{"above maxFrame", frameBytes(wire.TypeSend, field(wire.TagPayload, long(100)...)), 50, wire.ErrTooLarge, 0},
		{"above default maxFrame", frameBytes(wire.TypeSend, field(wire.TagPayload, long(wire.DefaultMaxFrame)...)), 0, wire.ErrTooLarge, 0},
		{"unknown type 0x00", []byte{0x00}, 0, wire.ErrUnknownType, 0},
		{"unknown type 0x0c", []byte{0x0c, 0x01, 0x00}, 0, wire.ErrUnknownType, 0},
		{"unknown type 0xff with junk", []byte{0xff, 0xff, 0xff}, 0, wire.ErrUnknownType, 0},
		{"duplicate field", frameBytes(wire.TypeAck, field(wire.TagSeq, 1), field(wire.TagSeq, 1)), 0, wire.ErrMalformed, wire.TagSeq},
		{"duplicate last_seq", frameBytes(wire.TypeHello, field(wire.TagLastSeq, 0), field(wire.TagLastSeq, 0)), 0, wire.ErrMalformed, wire.TagLastSeq},
		{"duplicate tag 0", frameBytes(wire.TypeAck, field(0), field(0)), 0, wire.ErrMalformed, 0},
		{"duplicate string", frameBytes(wire.TypeSend, field(wire.TagClientID, 'a'), field(wire.TagKind, 2), field(wire.TagClientID, 'a')), 0, wire.ErrMalformed, wire.TagClientID},
		{"tag without length", []byte{byte(wire.TypeAck), byte(wire.TagSeq)}, 0, wire.ErrTruncated, wire.TagSeq},
		{"unfinished length", []byte{byte(wire.TypeAck), byte(wire.TagSeq), 0x80}, 0, wire.ErrTruncated, wire.TagSeq},
		{"value shorter than length", []byte{byte(wire.TypeSend), byte(wire.TagPayload), 5, 1, 2}, 0, wire.ErrTruncated, wire.TagPayload},
		{"value missing", []byte{byte(wire.TypeSend), byte(wire.TagPayload), 1}, 0, wire.ErrTruncated, wire.TagPayload},
		{"huge length", append([]byte{byte(wire.TypeSend), byte(wire.TagPayload)}, uvarint(1<<62)...), 0, wire.ErrTruncated, wire.TagPayload},
		{"length over 64 bits", append([]byte{byte(wire.TypeSend), byte(wire.TagPayload)}, bytes.Repeat([]byte{0xff}, 11)...), 0, wire.ErrMalformed, wire.TagPayload},
		{"non-canonical length", []byte{byte(wire.TypeSend), byte(wire.TagPayload), 0x81, 0x00, 7}, 0, wire.ErrMalformed, wire.TagPayload},
		{"unknown tag with truncated value", []byte{byte(wire.TypePing), 200, 3, 1}, 0, wire.ErrTruncated, 200},
		{"int non-canonical 0x80 0x00", frameBytes(wire.TypeAck, field(wire.TagSeq, 0x80, 0x00)), 0, wire.ErrMalformed, wire.TagSeq},
		{"int non-canonical 0x81 0x00", frameBytes(wire.TypeAck, field(wire.TagSeq, 0x81, 0x00)), 0, wire.ErrMalformed, wire.TagSeq},
		{"int empty", frameBytes(wire.TypeAck, field(wire.TagSeq)), 0, wire.ErrMalformed, wire.TagSeq},
		{"int trailing byte", frameBytes(wire.TypeAck, field(wire.TagSeq, 0x01, 0x00)), 0, wire.ErrMalformed, wire.TagSeq},
		{"int unfinished", frameBytes(wire.TypeAck, field(wire.TagSeq, 0x81)), 0, wire.ErrMalformed, wire.TagSeq},
		{"int 11 bytes", frameBytes(wire.TypePing, field(wire.TagNonce, append(bytes.Repeat([]byte{0x81}, 10), 0x01)...)), 0, wire.ErrMalformed, wire.TagNonce},
		{"int overflows 64 bits", frameBytes(wire.TypePing, field(wire.TagNonce, append(bytes.Repeat([]byte{0xff}, 9), 0x02)...)), 0, wire.ErrMalformed, wire.TagNonce},
		{"kind 65536", frameBytes(wire.TypeSend, field(wire.TagKind, uvarint(1<<16)...)), 0, wire.ErrMalformed, wire.TagKind},
		{"stage 256", frameBytes(wire.TypeAck, field(wire.TagStage, uvarint(256)...)), 0, wire.ErrMalformed, wire.TagStage},
		{"role 256", frameBytes(wire.TypeWelcome, field(wire.TagRole, uvarint(256)...)), 0, wire.ErrMalformed, wire.TagRole},
		{"code 65536", frameBytes(wire.TypeError, field(wire.TagCode, uvarint(1<<16)...)), 0, wire.ErrMalformed, wire.TagCode},
		{"seq 2^63", frameBytes(wire.TypeAck, field(wire.TagSeq, uvarint(1<<63)...)), 0, wire.ErrMalformed, wire.TagSeq},
		{"fatal 2", frameBytes(wire.TypeError, field(wire.TagFatal, 2)), 0, wire.ErrMalformed, wire.TagFatal},
		{"session not UTF-8", frameBytes(wire.TypeHello, field(wire.TagSession, 'f', 0xff)), 0, wire.ErrMalformed, wire.TagSession},
		{"client_id not UTF-8", frameBytes(wire.TypeSend, field(wire.TagClientID, 0xc3)), 0, wire.ErrMalformed, wire.TagClientID},
		{"reason surrogate", frameBytes(wire.TypeAck, field(wire.TagReason, 0xed, 0xa0, 0x80)), 0, wire.ErrMalformed, wire.TagReason},
		{"message overlong encoding", frameBytes(wire.TypeError, field(wire.TagMessage, 0xc0, 0xaf)), 0, wire.ErrMalformed, wire.TagMessage},
		{"session 129 bytes", frameBytes(wire.TypeHello, field(wire.TagSession, long(wire.MaxIDLen+1)...)), 0, wire.ErrMalformed, wire.TagSession},
		{"client_id 129 bytes", frameBytes(wire.TypeSend, field(wire.TagClientID, long(wire.MaxIDLen+1)...)), 0, wire.ErrMalformed, wire.TagClientID},
		{"token 4097 bytes", frameBytes(wire.TypeHello, field(wire.TagToken, long(wire.MaxTokenLen+1)...)), 0, wire.ErrMalformed, wire.TagToken},
		{"bad field after good ones", frameBytes(wire.TypeSend, field(wire.TagClientID, 'a'), field(wire.TagKind, 0x80, 0x00)), 0, wire.ErrMalformed, wire.TagKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wire.Decode(tt.in, tt.maxFrame)
			if err == nil {
				t.Fatalf("Decode(%x) = nil error, want %v", tt.in, tt.want)
			}
			if tt.tag != 0 {
				checkFieldError(t, err, tt.want, wire.Type(tt.in[0]), tt.tag)
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Decode(%x) = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestUnknownType(t *testing.T) {
	for _, typ := range []byte{0x00, 0x0c, 0x7f, 0xff} {
		f, err := wire.Decode([]byte{typ, 0x01, 0x01, 0x00}, 0)
		if !errors.Is(err, wire.ErrUnknownType) {
			t.Errorf("Decode(type 0x%02x) err = %v, want ErrUnknownType", typ, err)
		}
		if f.Type != wire.Type(typ) {
			t.Errorf("Decode(type 0x%02x).Type = %v, want it set so the caller can skip and count it", typ, f.Type)
		}
	}
}

func TestUnknownTagsSkipped(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want wire.Frame
	}{
		{"tag 0", frameBytes(wire.TypeAck, field(0, 1, 2, 3), field(wire.TagSeq, 5)), wire.Frame{Type: wire.TypeAck, Seq: 5}},
		{"tag 32 between known", frameBytes(wire.TypeAck, field(wire.TagSeq, 5), field(32, 0xff), field(wire.TagStage, 2)),
			wire.Frame{Type: wire.TypeAck, Seq: 5, Stage: wire.StageApplied}},
		{"tag 255 empty", frameBytes(wire.TypePing, field(255), field(wire.TagNonce, 1)), wire.Frame{Type: wire.TypePing, Nonce: 1}},
		{"tag 200 repeated", frameBytes(wire.TypePing, field(200, 1), field(200, 2)), wire.Frame{Type: wire.TypePing}},
		{"tag 40 long value", frameBytes(wire.TypePing, field(40, bytes.Repeat([]byte{0x80}, 300)...)), wire.Frame{Type: wire.TypePing}},
		{"tag 33 not UTF-8, not an int", frameBytes(wire.TypePing, field(33, 0xff, 0x80)), wire.Frame{Type: wire.TypePing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.Decode(tt.in, 0)
			if err != nil {
				t.Fatalf("Decode(%x): %v", tt.in, err)
			}
			if !framesEqual(&got, &tt.want) {
				t.Errorf("Decode(%x) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestFieldsOrderFree: fields may come in any order.
func TestFieldsOrderFree(t *testing.T) {
	in := frameBytes(wire.TypeAck, field(wire.TagStage, 3), field(wire.TagReason, 'n', 'o'), field(wire.TagSeq, 9))
	got, err := wire.Decode(in, 0)
	want := wire.Frame{Type: wire.TypeAck, Seq: 9, Stage: wire.StageRejected, Reason: "no"}
	if err != nil || !framesEqual(&got, &want) {
		t.Errorf("Decode(%x) = %+v, %v; want %+v", in, got, err, want)
	}
}

func TestDecodeAliasesInput(t *testing.T) {
	in := frameBytes(wire.TypeSend, field(wire.TagPayload, 1, 2, 3))
	f, err := wire.Decode(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	in[3] = 9
	if f.Payload[0] != 9 {
		t.Errorf("Payload does not alias the input, as Decode documents")
	}
}

func TestFieldErrorIs(t *testing.T) {
	for _, sentinel := range []error{wire.ErrMalformed, wire.ErrTruncated} {
		t.Run(sentinel.Error(), func(t *testing.T) {
			err := error(&wire.FieldError{Type: wire.TypeSend, Tag: wire.TagKind, Err: sentinel})
			if !errors.Is(err, sentinel) {
				t.Errorf("errors.Is(FieldError{%v}, %v) = false", sentinel, sentinel)
			}
			if errors.Is(err, wire.ErrTooLarge) {
				t.Errorf("errors.Is(FieldError{%v}, ErrTooLarge) = true", sentinel)
			}
			if got := err.Error(); !strings.Contains(got, "SEND") || !strings.Contains(got, "field 12") {
				t.Errorf("Error() = %q, want frame type and tag named", got)
			}
		})
	}
}

// TestErrorsCarryNoValues: decode errors are logged and sent to peers in
// ERROR messages, so they must never repeat a field's value.
func TestErrorsCarryNoValues(t *testing.T) {
	const secret = "Jane-Doe-1961" // stands for patient data in a field
	tests := []struct {
		name string
		in   []byte
	}{
		{"invalid UTF-8", frameBytes(wire.TypeSend, field(wire.TagClientID, append([]byte(secret), 0xff)...))},
		{"too long", frameBytes(wire.TypeSend, field(wire.TagSender, []byte(strings.Repeat(secret, 20))...))},
		{"token too long", frameBytes(wire.TypeHello, field(wire.TagToken, []byte(strings.Repeat(secret, 400))...))},
		{"duplicate", frameBytes(wire.TypeSend, field(wire.TagReason, []byte(secret)...), field(wire.TagReason, []byte(secret)...))},
		{"truncated", frameBytes(wire.TypeSend, []byte{byte(wire.TagMessage), 100}, []byte(secret))},
		{"bad int", frameBytes(wire.TypeSend, field(wire.TagSeq, []byte(secret)...))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wire.Decode(tt.in, 1<<20)
			if err == nil {
				t.Fatal("Decode succeeded, want an error")
			}
			if msg := err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, "Jane") || strings.Contains(msg, "4a616e65") {
				t.Errorf("error %q repeats a field value", msg)
			}
		})
	}
}

func TestFrameDurable(t *testing.T) {
	tests := []struct {
		flags uint64
		want  bool
	}{{0, false}, {wire.FlagDurable, true}, {wire.FlagDegraded, false}, {wire.FlagDurable | wire.FlagDegraded, true}}
	for _, tt := range tests {
		f := wire.Frame{Flags: tt.flags}
		if got := f.Durable(); got != tt.want {
			t.Errorf("Frame{Flags: %#x}.Durable() = %v, want %v", tt.flags, got, tt.want)
		}
	}
}

func TestClassOf(t *testing.T) {
	tests := []struct {
		kind    wire.Kind
		durable bool
		want    wire.Class
	}{
		{wire.KindConfig, true, wire.ClassDurable},
		{wire.KindChat, true, wire.ClassDurable},
		{wire.KindTelemetry, true, wire.ClassDurable},
		{wire.KindTelemetry, false, wire.ClassTelemetry},
		{wire.KindSignal, false, wire.ClassSignal},
		{wire.KindTyping, false, wire.ClassSignal},
		{wire.KindChat, false, wire.ClassSignal},
		{100, false, wire.ClassSignal},
		{100, true, wire.ClassDurable},
	}
	for _, tt := range tests {
		if got := wire.ClassOf(tt.kind, tt.durable); got != tt.want {
			t.Errorf("ClassOf(%v, %v) = %v, want %v", tt.kind, tt.durable, got, tt.want)
		}
	}
}

func TestStageFinal(t *testing.T) {
	for s, want := range map[wire.Stage]bool{0: false, wire.StageReceived: false, wire.StageApplied: true, wire.StageRejected: true, 4: false} {
		if got := s.Final(); got != want {
			t.Errorf("Stage(%d).Final() = %v, want %v", s, got, want)
		}
	}
}

func TestUnknownNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{wire.Type(0x0c).String(), "TYPE(0x0c)"},
		{wire.Code(99).String(), "code_99"},
		{wire.Kind(63).String(), "unknown"},
		{wire.Kind(64).String(), "app"},
		{wire.Stage(9).String(), "unknown"},
		{wire.Role(9).String(), "unknown"},
		{wire.Class(9).String(), "unknown"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
