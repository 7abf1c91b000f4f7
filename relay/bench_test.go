package relay_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// BenchmarkDurableSend: closed-loop durable SENDs from N sessions, one in
// flight each, over WebSocket; b.N is the total number of PERSISTED.
func BenchmarkDurableSend(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			r := relaytest.Start(b, relaytest.Options{})
			conns := make([]*relaytest.Conn, n)
			for i := range conns {
				conns[i] = relaytest.Dial(b, r, "ws")
				conns[i].Hello(r.Token(b, token.Claims{Subject: "c", Role: "clinician", Session: fmt.Sprint("b", i)}), false, 0)
			}
			payload := make([]byte, 256)
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N/n + 1
			for i, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range per {
						if err := c.TrySend(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprint(i, "-", j), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: payload}); err != nil {
							b.Error(err)
							return
						}
						if f, err := c.Next(10e9); err != nil || f.Type != wire.TypePersisted {
							b.Errorf("got %v %v", f.Type, err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkReplicatedSend: closed-loop durable SENDs of one session whose
// home replicates to a second relay (in process, loopback QUIC peer link),
// beside the same on one relay; b.N is the number of PERSISTED.
func BenchmarkReplicatedSend(b *testing.B) {
	for _, mode := range []string{"single", "pair", "pair-sync-home"} {
		b.Run(mode, func(b *testing.B) {
			var home *relaytest.Relay
			if mode == "single" {
				home = relaytest.Start(b, relaytest.Options{})
			} else {
				cl := &relaytest.Cluster{}
				home = relaytest.Start(b, relaytest.Options{Configure: func(c *relay.Config) {
					c.RelayID, c.Region, c.Cluster, c.PeerSecret = "relay-a", "eu", cl, peerSecret
					c.RequireReplica, c.SyncHome = true, mode == "pair-sync-home"
				}})
				other := relaytest.Start(b, relaytest.Options{Configure: func(c *relay.Config) {
					c.RelayID, c.Region, c.Cluster, c.PeerSecret = "relay-b", "eu", cl, peerSecret
					c.Auth = home.Keyring
				}})
				cl.Set(home.Peer("relay-a", "eu"))
				cl.Set(other.Peer("relay-b", "eu"))
			}
			c := relaytest.Dial(b, home, "ws")
			c.Hello(home.Token(b, token.Claims{Subject: "c", Role: "clinician", Session: "rb"}), false, 0)
			payload := make([]byte, 256)
			send := func(i int) {
				if err := c.TrySend(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprint(i), Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: payload}); err != nil {
					b.Fatal(err)
				}
				if f, err := c.Next(10e9); err != nil || f.Type != wire.TypePersisted {
					b.Fatalf("got %v %v", f.Type, err)
				}
			}
			send(-1) // warm-up: the session's first batch and the peer link
			b.ResetTimer()
			for i := range b.N {
				send(i)
			}
		})
	}
}
