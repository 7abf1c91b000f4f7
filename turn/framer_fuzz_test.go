package turn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

// FuzzFramer feeds a stream, cut into chunks the input chooses, through the
// framer and checks: no panic or hang, output is the input minus dropped
// requests, no Read crosses a frame boundary, errors are typed.
func FuzzFramer(f *testing.F) {
	bind := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	ind := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication), rawAttr{stun.AttrData, make([]byte, 5000)}).Raw
	cd := []byte{0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0}
	f.Add([]byte{3, 7}, append(append(append([]byte{}, bind...), cd...), ind...), false)
	f.Add([]byte{1}, append(append([]byte{}, cd...), bind...), true)
	f.Add([]byte{}, []byte{0xff, 0, 0, 0}, false)
	f.Add([]byte{2}, []byte{0x00, 0x01, 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, cuts []byte, stream []byte, drop bool) {
		src := &chunked{b: stream, cuts: cuts}
		var frames, dropped int
		fr := framer{r: src.read, inspect: func(b []byte) bool {
			if len(b) < 20 || binary.BigEndian.Uint16(b[2:4])+20 != uint16(len(b)) {
				t.Fatalf("inspect got %d bytes, header says %d", len(b), binary.BigEndian.Uint16(b[2:4])+20)
			}
			frames++
			if drop && b[19]&1 == 1 {
				dropped += len(b)
				return false
			}
			return true
		}}
		var out []byte
		p := make([]byte, 1+len(cuts)%64)
		for i := 0; i < len(stream)+10; i++ {
			n, err := fr.Read(p)
			if n > len(p) || n < 0 {
				t.Fatalf("Read returned %d for a %d-byte buffer", n, len(p))
			}
			out = append(out, p[:n]...)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrBadFrame) && !errors.Is(err, io.ErrNoProgress) {
					t.Fatalf("untyped error %v", err)
				}
				break
			}
		}
		if len(out)+dropped > len(stream) {
			t.Fatalf("framer produced %d bytes (+%d dropped) from %d", len(out), dropped, len(stream))
		}
		if !drop && !bytes.HasPrefix(stream, out) {
			t.Fatal("framer changed the stream")
		}
	})
}

// chunked is a reader that returns its bytes in the sizes cuts names.
type chunked struct {
	b    []byte
	cuts []byte
	i    int
}

func (c *chunked) read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := len(c.b)
	if len(c.cuts) > 0 {
		n = 1 + int(c.cuts[c.i%len(c.cuts)])
		c.i++
	}
	n = min(n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// FuzzInspect: arbitrary datagrams through inspect never panic, and only
// requests with a valid MESSAGE-INTEGRITY leave a key choice or peer list.
func FuzzInspect(f *testing.F) {
	creds := &Credentials{Secrets: [][]byte{labSecret, rotatedSecret}, Ended: func(string) bool { return false }}
	user, pass, _, err := creds.Mint("sess-fuzz", 3600e9)
	if err != nil {
		f.Fatal(err)
	}
	perm := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest),
		stun.NewUsername(user), stun.NewRealm(DefaultRealm), stun.NewNonce("n"),
		stun.NewLongTermIntegrity(user, DefaultRealm, pass), stun.Fingerprint)
	f.Add(perm.Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42})
	s := &Server{creds: *creds, cfg: Config{Realm: DefaultRealm}, unauth: newIPLimiter(0, 0),
		keyIx: map[string]int{}, slots: map[clientKey][]netip.AddrPort{}}
	var err2 error
	if s.m, err2 = newMetrics(s, nil, nil); err2 != nil {
		f.Fatal(err2)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s.inspect(b, clientKey{ap: netip.MustParseAddrPort("192.0.2.1:5000")})
	})
}
