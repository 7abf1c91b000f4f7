package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.hex and the generated fuzz seeds")

// The worked examples of docs/protocol.md. Each is encoded by the codec,
// dumped as annotated hex by an independent reader of the format (dump
// below), and compared with testdata/golden/NAME.hex; the doc test then
// compares every ```hex title=NAME block of the document with that file.

var exampleConfig = wire.Config{
	BaseVersion: 17,
	Params: []wire.Param{
		{Name: "gain.l.2k", Value: 215}, // 21.5 dB
		{Name: "gain.r.2k", Value: 210},
		{Name: "gain.l.250", Value: -15}, // -1.5 dB
	},
}

var exampleConfigBytes = wire.AppendConfig(nil, &exampleConfig)

var exampleSnapshot = wire.AppendConfig(nil, &wire.Config{
	BaseVersion: 17,
	Params:      []wire.Param{{Name: "gain.l.2k", Value: 200}, {Name: "gain.r.2k", Value: 210}},
})

var (
	helloFresh = wire.Frame{
		Type: wire.TypeHello, Token: []byte("example-token"),
		MinVersion: 1, MaxVersion: 1, Caps: wire.CapResume | wire.CapReceipts,
	}
	sendConfig = wire.Frame{
		Type: wire.TypeSend, ClientID: "cmd-1042", Kind: wire.KindConfig,
		Flags: wire.FlagDurable, Payload: exampleConfigBytes,
	}
)

// example is one worked example: a frame, a Config payload, or stream bytes.
type example struct {
	name   string
	frame  *wire.Frame  // a frame, or the frame inside stream bytes
	config *wire.Config // a Config payload
	stream bool         // frame as QUIC stream bytes: length prefix (and class byte if class >= 0)
	class  int
}

var examples = []example{
	{name: "hello-fresh", frame: &helloFresh},
	{name: "hello-resume", frame: &wire.Frame{
		Type: wire.TypeHello, Token: []byte("example-token"),
		MinVersion: 1, MaxVersion: 1, Caps: wire.CapResume | wire.CapReceipts,
		Session: "fs_7Qm2Kx", Resume: true, LastSeq: 39, Epoch: 3,
	}},
	{name: "welcome", frame: &wire.Frame{
		Type: wire.TypeWelcome, Version: 1, Session: "fs_7Qm2Kx", Epoch: 3, HeadSeq: 41,
		MaxFrame: wire.DefaultMaxFrame, ConnID: "cn_5d0e", Role: wire.RoleClinician,
		Sender: "clin_8f3a", PingMillis: 15000, ConfigVersion: 17, Config: exampleSnapshot,
	}},
	{name: "config-payload", config: &exampleConfig},
	{name: "send-config", frame: &sendConfig},
	{name: "persisted", frame: &wire.Frame{Type: wire.TypePersisted, ClientID: "cmd-1042", Seq: 42}},
	{name: "deliver-config", frame: &wire.Frame{
		Type: wire.TypeDeliver, ClientID: "cmd-1042", Kind: wire.KindConfig, Flags: wire.FlagDurable,
		Payload: exampleConfigBytes, Seq: 42, Sender: "clin_8f3a", Role: wire.RoleClinician,
	}},
	{name: "ack-received", frame: &wire.Frame{Type: wire.TypeAck, Seq: 42, Stage: wire.StageReceived}},
	{name: "ack-applied", frame: &wire.Frame{Type: wire.TypeAck, Seq: 42, Stage: wire.StageApplied}},
	{name: "ack-rejected", frame: &wire.Frame{
		Type: wire.TypeAck, Seq: 42, Stage: wire.StageRejected, Reason: "readback_mismatch",
	}},
	{name: "receipt-applied", frame: &wire.Frame{
		Type: wire.TypeReceipt, Kind: wire.KindConfig, Seq: 44, Sender: "pat_2c71",
		Stage: wire.StageApplied, RefSeq: 42, Role: wire.RolePatient, RefClientID: "cmd-1042",
	}},
	{name: "error-conflict", frame: &wire.Frame{
		Type: wire.TypeError, Code: wire.CodeConflict, ConfigVersion: 18,
		Message: "stale base version 17, device head is 18", RefClientID: "cmd-1043",
	}},
	{name: "error-limit", frame: &wire.Frame{
		Type: wire.TypeError, Code: wire.CodeLimit, RefClientID: "cmd-1044",
		Message: `parameter "gain.l.2k" changes by more than the model's largest step 60`,
	}},
	{name: "error-forbidden-ack", frame: &wire.Frame{
		Type: wire.TypeError, Code: wire.CodeForbidden, RefSeq: 42,
		Message: "only the patient's app acks config applied or rejected",
	}},
	{name: "error-too-large", frame: &wire.Frame{
		Type: wire.TypeError, Code: wire.CodeTooLarge, RefClientID: "chat-311",
		Message: "payload over 65024 bytes",
	}},
	{name: "error-unauthorized", frame: &wire.Frame{
		Type: wire.TypeError, Code: wire.CodeUnauthorized, Message: "token refused", Fatal: true,
	}},
	{name: "ping", frame: &wire.Frame{Type: wire.TypePing, Nonce: 7}},
	{name: "pong", frame: &wire.Frame{Type: wire.TypePong, Nonce: 7}},
	{name: "goaway", frame: &wire.Frame{
		Type: wire.TypeGoaway, Code: wire.CodeDraining,
		Redirect: "wss://relay-b.eu1.example:8443/v1/connect", AfterMillis: 5000,
	}},
	{name: "deliver-telemetry", frame: &wire.Frame{
		Type: wire.TypeDeliver, Kind: wire.KindTelemetry, Payload: []byte{0x01, 0x9a, 0x02, 0x41},
		Sender: "pat_2c71", Role: wire.RolePatient,
	}},
	{name: "quic-send-config", frame: &sendConfig, stream: true, class: -1},
	{name: "quic-control-open", frame: &helloFresh, stream: true, class: int(wire.ClassControl)},
}

// bytes returns the example's encoding.
func (e example) bytes() []byte {
	switch {
	case e.config != nil:
		return wire.AppendConfig(nil, e.config)
	case e.stream:
		var b []byte
		if e.class >= 0 {
			b = append(b, byte(e.class))
		}
		return wire.AppendLengthPrefixed(b, wire.Encode(e.frame))
	}
	return wire.Encode(e.frame)
}

// dump returns the example's annotated hex.
func (e example) dump() (string, error) {
	d := &dumper{}
	b := e.bytes()
	var err error
	switch {
	case e.config != nil:
		err = d.config(b, 0)
	case e.stream:
		if e.class >= 0 {
			d.line(0, b[:1], fmt.Sprintf("stream class %d (%v): first byte of the stream", b[0], wire.Class(b[0])))
			b = b[1:]
		}
		n := binary.BigEndian.Uint32(b)
		d.line(0, b[:4], fmt.Sprintf("frame length %d (4-byte big-endian)", n))
		err = d.frame(b[4:])
	default:
		err = d.frame(b)
	}
	return d.String(), err
}

func goldenPath(name string) string { return filepath.Join("testdata", "golden", name+".hex") }

// parseHex reads annotated hex: on each line, what follows # is a comment.
func parseHex(s string) ([]byte, error) {
	var out []byte
	for i, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, tok := range strings.Fields(line) {
			b, err := hex.DecodeString(tok)
			if err != nil || len(b) != 1 {
				return nil, fmt.Errorf("line %d: %q is not one hex byte", i+1, tok)
			}
			out = append(out, b[0])
		}
	}
	return out, nil
}

func TestGolden(t *testing.T) {
	names := map[string]bool{}
	for _, e := range examples {
		t.Run(e.name, func(t *testing.T) {
			if names[e.name] {
				t.Fatalf("duplicate example name")
			}
			names[e.name] = true
			got, err := e.dump()
			if err != nil {
				t.Fatalf("dump: %v", err)
			}
			path := goldenPath(e.name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./relay/wire -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s is stale (run with -update and review the diff)\ngot:\n%s\nwant:\n%s", path, got, want)
			}
			// The annotated hex parses back to exactly the encoding.
			b, err := parseHex(string(want))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if enc := e.bytes(); !bytes.Equal(b, enc) {
				t.Errorf("%s bytes:\ngot  %x\nwant %x", path, b, enc)
			}
			// Frames decode back to the example.
			if e.frame != nil {
				fb := e.bytes()
				if e.stream {
					if e.class >= 0 {
						fb = fb[1:]
					}
					r, err := wire.ReadFrame(bytes.NewReader(fb), 0)
					if err != nil {
						t.Fatalf("ReadFrame: %v", err)
					}
					fb = r
				}
				f, err := wire.Decode(fb, 0)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !framesEqual(&f, e.frame) {
					t.Errorf("Decode:\ngot  %+v\nwant %+v", f, *e.frame)
				}
			}
		})
	}
	// No stale golden files.
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.hex"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".hex"); !names[name] {
			if *update {
				os.Remove(f)
				continue
			}
			t.Errorf("%s has no example (run with -update to remove it)", f)
		}
	}
}

// dumper writes annotated hex: bytes on the left, 12 a line, and a comment
// from column commentCol.
type dumper struct{ lines []string }

const (
	bytesPerLine = 12
	commentCol   = 44
)

func (d *dumper) line(indent int, b []byte, comment string) {
	for first := true; first || len(b) > 0; first = false {
		n := min(len(b), bytesPerLine)
		var sb strings.Builder
		sb.WriteString(strings.Repeat("  ", indent))
		for i, c := range b[:n] {
			if i > 0 {
				sb.WriteByte(' ')
			}
			fmt.Fprintf(&sb, "%02x", c)
		}
		b = b[n:]
		s := sb.String()
		if first && comment != "" {
			s += strings.Repeat(" ", max(1, commentCol-len(s))) + "# " + strings.Repeat("  ", indent) + comment
		}
		d.lines = append(d.lines, s)
	}
}

func (d *dumper) String() string { return strings.Join(d.lines, "\n") + "\n" }

// field splits one tag-length-value field off b, insisting on a canonical
// length.
func splitField(b []byte) (tag byte, hdr, val, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, nil, fmt.Errorf("truncated field")
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || k != len(binary.AppendUvarint(nil, n)) || n > uint64(len(b)-1-k) {
		return 0, nil, nil, nil, fmt.Errorf("bad length")
	}
	return b[0], b[:1+k], b[1+k : 1+k+int(n)], b[1+k+int(n):], nil
}

func (d *dumper) frame(b []byte) error {
	f, err := wire.Decode(b, 0)
	if err != nil {
		return err
	}
	d.line(0, b[:1], fmt.Sprintf("%v (type 0x%02x)", f.Type, b[0]))
	rest := b[1:]
	for len(rest) > 0 {
		tag, hdr, val, r, err := splitField(rest)
		if err != nil {
			return err
		}
		rest = r
		spec, ok := specOf(wire.Tag(tag))
		if !ok {
			return fmt.Errorf("tag %d not in tagSpecs", tag)
		}
		all := append(slices.Clone(hdr), val...)
		head := fmt.Sprintf("%s (tag %d)", spec.name, tag)
		switch spec.typ {
		case typeUint:
			v, k := binary.Uvarint(val)
			if k != len(val) {
				return fmt.Errorf("tag %d: bad uint", tag)
			}
			d.line(0, all, head+" = "+uintMeaning(wire.Tag(tag), v))
		case typeString:
			d.line(0, all, fmt.Sprintf("%s, %d bytes: %q", head, len(val), val))
		case typeBytes:
			isConfig := wire.Tag(tag) == wire.TagConfig ||
				(wire.Tag(tag) == wire.TagPayload && f.Kind == wire.KindConfig)
			switch {
			case isConfig:
				d.line(0, hdr, fmt.Sprintf("%s, %d bytes: a Config", head, len(val)))
				if err := d.config(val, 1); err != nil {
					return err
				}
			case wire.Tag(tag) == wire.TagToken:
				d.line(0, all, fmt.Sprintf("%s, %d bytes: %q (placeholder)", head, len(val), val))
			default:
				d.line(0, all, fmt.Sprintf("%s, %d bytes (opaque to the relay)", head, len(val)))
			}
		}
	}
	return nil
}

func (d *dumper) config(b []byte, indent int) error {
	for len(b) > 0 {
		tag, hdr, val, r, err := splitField(b)
		if err != nil {
			return err
		}
		b = r
		switch tag {
		case 1:
			v, k := binary.Uvarint(val)
			if k != len(val) {
				return fmt.Errorf("config: bad base version")
			}
			d.line(indent, append(slices.Clone(hdr), val...), fmt.Sprintf("base_version (tag 1) = %d", v))
		case 2:
			d.line(indent, hdr, fmt.Sprintf("param (tag 2), %d bytes:", len(val)))
			n, k := binary.Uvarint(val)
			if k <= 0 || n > uint64(len(val)-k) {
				return fmt.Errorf("config: bad name length")
			}
			d.line(indent+1, val[:k+int(n)], fmt.Sprintf("name, %d bytes: %q", n, val[k:k+int(n)]))
			v, vk := binary.Varint(val[k+int(n):])
			if vk != len(val)-k-int(n) {
				return fmt.Errorf("config: bad value")
			}
			d.line(indent+1, val[k+int(n):], fmt.Sprintf("value = %d (zigzag varint)", v))
		default:
			return fmt.Errorf("config: unknown tag %d", tag)
		}
	}
	return nil
}

// uintMeaning renders an integer field with the name of its value.
func uintMeaning(t wire.Tag, v uint64) string {
	s := fmt.Sprint(v)
	switch t {
	case wire.TagKind:
		return s + " " + wire.Kind(v).String()
	case wire.TagStage:
		return s + " " + wire.Stage(v).String()
	case wire.TagRole:
		return s + " " + wire.Role(v).String()
	case wire.TagCode:
		return s + " " + wire.Code(v).String()
	case wire.TagFatal:
		return s + " true"
	case wire.TagFlags:
		return fmt.Sprintf("0x%x %s", v, bitNames(v, flagNames))
	case wire.TagCaps:
		return fmt.Sprintf("0x%x %s", v, bitNames(v, capNames))
	case wire.TagAfterMillis, wire.TagPingMillis:
		return s + " ms"
	case wire.TagMaxFrame:
		return s + " bytes"
	}
	return s
}

type bitName struct {
	bit  uint64
	name string
}

var (
	flagNames = []bitName{{wire.FlagDurable, "durable"}, {wire.FlagDegraded, "degraded"}}
	capNames  = []bitName{{wire.CapResume, "resume"}, {wire.CapReceipts, "receipts"}}
)

func bitNames(v uint64, names []bitName) string {
	var out []string
	for _, n := range names {
		if v&n.bit != 0 {
			out = append(out, n.name)
			v &^= n.bit
		}
	}
	if v != 0 {
		out = append(out, fmt.Sprintf("0x%x", v))
	}
	return strings.Join(out, "|")
}
