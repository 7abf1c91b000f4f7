//go:build linux && (amd64 || arm64)

package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// sendModes are the fast path's two ways to send a batch: io_uring (where
// the kernel allows it) and one sendto per packet.
var sendModes = []struct {
	name   string
	noRing bool
}{
	{"io_uring", false},
	{"sendto", true},
}

// newModeSender returns a batch sender in mode, skipping the test when
// io_uring is wanted and unavailable.
func newModeSender(t *testing.T, noRing bool) *sender {
	t.Helper()
	forceSendto(t, noRing)
	s := newBatchSender()
	t.Cleanup(s.close)
	if ring := s.q != nil; ring == noRing {
		if !noRing {
			t.Skip("io_uring unavailable here")
		}
		t.Fatal("the sender has a ring")
	}
	return s
}

// forceSendto sets noURing for the test.
func forceSendto(t *testing.T, on bool) {
	old := noURing
	noURing = on
	t.Cleanup(func() { noURing = old })
}

func loopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSendQueue: packets queued from several sockets (in runs, repeated,
// more than one batch holds) all arrive, each from the socket it was
// queued on; packets of a socket closed before the flush are dropped and
// the rest of the batch still goes.
func TestSendQueue(t *testing.T) {
	for _, m := range sendModes {
		t.Run(m.name, func(t *testing.T) {
			s := newModeSender(t, m.noRing)
			peer := loopbackUDP(t)
			peerAP := netip.MustParseAddrPort(peer.LocalAddr().String())
			outs := make([]*udpOut, 6)
			for i := range outs {
				outs[i] = newUDPOut(loopbackUDP(t))
			}
			outs[5].conn.Close()
			const n = 3*batchSize + 5
			bufs := make([][]byte, n)
			want := map[int]string{} // packet → source address
			for i := range n {
				o := i / 3 % len(outs) // runs of three from one socket
				bufs[i] = binary.BigEndian.AppendUint32(nil, uint32(i))
				s.send(outs[o], bufs[i], peerAP)
				if o != 5 {
					want[i] = outs[o].conn.LocalAddr().String()
				}
			}
			s.flush()
			buf := make([]byte, 64)
			for range len(want) {
				_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, from, err := peer.ReadFromUDP(buf)
				if err != nil {
					t.Fatalf("%d packets missing: %v", len(want), err)
				}
				i := int(binary.BigEndian.Uint32(buf[:k]))
				src, ok := want[i]
				if !ok {
					t.Fatalf("packet %d arrived twice or from the closed socket", i)
				}
				if from.String() != src {
					t.Errorf("packet %d from %v, want %v", i, from, src)
				}
				delete(want, i)
			}
			silent(t, peer, 50*time.Millisecond)
		})
	}
}

// TestSendQueueConcurrentClose: while one goroutine sends batches from a
// pool of sockets, another closes them and opens new ones, which take the
// closed descriptors' numbers. No packet may leave from a socket other
// than the one it was queued on (a descriptor reused under a queued send
// would send it from the new socket). Run with -race.
func TestSendQueueConcurrentClose(t *testing.T) {
	for _, m := range sendModes {
		t.Run(m.name, func(t *testing.T) {
			s := newModeSender(t, m.noRing)
			peer := loopbackUDP(t)
			if err := peer.SetReadBuffer(4 << 20); err != nil {
				t.Fatal(err)
			}
			peerAP := netip.MustParseAddrPort(peer.LocalAddr().String())

			var (
				mu    sync.Mutex // guards the fields below
				pool  []int      // ids of the sockets to send from
				addrs []string   // every socket's address, by id
				outs  []*udpOut  // every socket, by id
			)
			open := func() int {
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Error(err)
					return -1
				}
				mu.Lock()
				defer mu.Unlock()
				outs = append(outs, newUDPOut(c))
				addrs = append(addrs, c.LocalAddr().String())
				return len(outs) - 1
			}
			for range 16 {
				id := open()
				mu.Lock()
				pool = append(pool, id)
				mu.Unlock()
			}
			t.Cleanup(func() {
				for _, o := range outs {
					o.conn.Close()
				}
			})

			var received, wrong atomic.Int64
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				buf := make([]byte, 64)
				for {
					k, from, err := peer.ReadFromUDP(buf)
					if err != nil {
						return
					}
					id := int(binary.BigEndian.Uint32(buf[:k]))
					mu.Lock()
					want := addrs[id]
					mu.Unlock()
					if from.String() != want && wrong.Add(1) <= 3 {
						t.Errorf("packet for socket %d (%s) came from %v", id, want, from)
					}
					received.Add(1)
				}
			}()

			stop := make(chan struct{})
			closerDone := make(chan struct{})
			go func() { // closes a socket of the pool and opens another, which takes its descriptor
				defer close(closerDone)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					j := i % len(pool)
					old := outs[pool[j]]
					mu.Unlock()
					old.conn.Close()
					id := open()
					if id < 0 {
						return
					}
					mu.Lock()
					pool[j] = id
					mu.Unlock()
				}
			}()

			bufs := make([][]byte, batchSize)
			for round := range 2000 {
				for i := range batchSize {
					mu.Lock()
					id := pool[(round+i)%len(pool)]
					o := outs[id]
					mu.Unlock()
					bufs[i] = binary.BigEndian.AppendUint32(bufs[i][:0], uint32(id))
					s.send(o, bufs[i], peerAP)
				}
				s.flush()
			}
			close(stop)
			<-closerDone
			waitFor(t, 5*time.Second, "some packets", func() bool { return received.Load() > 0 })
			peer.Close()
			<-readerDone
			if wrong.Load() > 0 {
				t.Fatalf("%d of %d packets left from the wrong socket", wrong.Load(), received.Load())
			}
			t.Logf("%d packets received", received.Load())
		})
	}
}

// TestFastPathBursts: eight clients send bursts of ChannelData at once,
// so the server's reads return several packets for different relayed
// sockets, sent together; every packet reaches the peer from its
// client's relayed address, with either way of sending.
func TestFastPathBursts(t *testing.T) {
	for _, m := range sendModes {
		t.Run(m.name, func(t *testing.T) {
			forceSendto(t, m.noRing)
			ts := newServer(t, nil)
			for _, u := range ts.socks {
				if ring := u.snd.q != nil; ring == m.noRing {
					if !m.noRing {
						t.Skip("io_uring unavailable here")
					}
					t.Fatal("the listener's sender has a ring")
				}
			}
			peer := udpPeer(t, "127.0.0.2:0")
			if err := peer.SetReadBuffer(4 << 20); err != nil {
				t.Fatal(err)
			}
			peerAP := netip.MustParseAddrPort(peer.LocalAddr().String())
			const clients, burst = 8, 40
			cs := make([]*rawClient, clients)
			relays := make([]string, clients)
			for i := range cs {
				user, pass := ts.mint(t, "sess-bursts-"+itoa(i), time.Hour) // one per client: the session quota
				cs[i] = dialRaw(t, "udp4", ts.udp)
				relay, err := cs[i].allocate(user, pass)
				if err != nil {
					t.Fatal(err)
				}
				relays[i] = relay.String()
				if resp, err := cs[i].request(stun.MethodChannelBind, user, pass, channelNumber(0x4000), peerAttr(peerAP)); err != nil || code(resp) != 0 {
					t.Fatalf("channel bind: %v %v", err, resp)
				}
			}
			for seq := range burst {
				for i, c := range cs {
					if err := c.channelData(0x4000, []byte{byte(i), byte(seq)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := make([]int, clients)
			buf := make([]byte, 64)
			for range clients * burst {
				_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := peer.ReadFromUDP(buf)
				if err != nil {
					t.Fatalf("received %v of %d each: %v", got, burst, err)
				}
				if n != 2 || int(buf[0]) >= clients {
					t.Fatalf("peer got %x", buf[:n])
				}
				i := int(buf[0])
				if from.String() != relays[i] {
					t.Fatalf("client %d's packet came from %v, want its relayed address %v", i, from, relays[i])
				}
				got[i]++
			}
			for i, n := range got {
				if n != burst {
					t.Errorf("client %d: %d packets, want %d", i, n, burst)
				}
			}
		})
	}
}
