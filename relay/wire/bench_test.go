package wire_test

import (
	"bytes"
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

// benchSend is a durable SEND with a 256-byte payload.
var benchSend = wire.Frame{
	Type: wire.TypeSend, ClientID: "01J9ZK5W3Q8B7C6D5E4F3G2H1J", Kind: wire.KindChat,
	Flags: wire.FlagDurable, Payload: bytes.Repeat([]byte{0xa5}, 256),
}

func BenchmarkEncodeSend(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = wire.Append(buf[:0], &benchSend)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeSend(b *testing.B) {
	b.ReportAllocs()
	enc := wire.Encode(&benchSend)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := wire.Decode(enc, 0); err != nil {
			b.Fatal(err)
		}
	}
}
