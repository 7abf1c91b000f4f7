package call_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/client/call"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
	"github.com/stapes-relay/stapes/turn"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lab is a relay and a TURN server on loopback, as relayd runs them
// (the TURN allow list admits 127.0.0.0/8 as labs do).
type lab struct {
	relay *relaytest.Relay
	turn  *turn.Server
	creds *turn.Credentials
	addr  string        // TURN UDP and TCP
	ended atomic.Uint64 // bytes relayed by closed allocations (OnUsage)
}

func newLab(t *testing.T) *lab {
	t.Helper()
	r := relaytest.Start(t, relaytest.Options{})
	creds := &turn.Credentials{Secrets: [][]byte{[]byte("call-test-secret-0123456789")}}
	pcs, err := turn.ListenUDP(context.Background(), "udp4", "127.0.0.1:0", 2, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp4", pcs[0].LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := turn.LocalConfig(creds)
	cfg.PacketConns, cfg.TCPListeners = pcs, []net.Listener{tl}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	l := &lab{relay: r, creds: creds, addr: pcs[0].LocalAddr().String()}
	cfg.OnUsage = func(u turn.Usage) { l.ended.Add(u.BytesToPeer + u.BytesFromPeer) }
	ts, err := turn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	l.turn = ts
	return l
}

// participant is a session client whose delivery loop hands the
// session's signalling to a Call.
type participant struct {
	c       *client.Client
	call    *call.Call
	wg      sync.WaitGroup
	signals atomic.Int64 // signalling messages sent
}

func (l *lab) join(t *testing.T, role, subject, session, iceURL string, r call.Role, d time.Duration) *participant {
	t.Helper()
	tok := l.relay.Token(t, token.Claims{Subject: subject, Role: role, Session: session, Device: "HA-1", Model: "m1"})
	c, err := client.New(client.Config{
		URLs:  []string{l.relay.WSURL},
		Token: func(context.Context) ([]byte, error) { return tok, nil },
		TLS:   l.relay.ClientTLS(),
	})
	if err != nil {
		t.Fatal(err)
	}
	user, pass, _, err := l.creds.Mint(session, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &participant{c: c}
	p.call, err = call.New(call.Config{
		Role:       r,
		ICEServers: []webrtc.ICEServer{{URLs: []string{iceURL}, Username: user, Credential: pass}},
		Duration:   d,
		Settings:   func(se *webrtc.SettingEngine) { se.SetIncludeLoopbackCandidate(true) },
	}, func(ctx context.Context, b []byte) error {
		p.signals.Add(1)
		_, err := c.Send(ctx, wire.KindSignal, b, false)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p.wg.Go(func() {
		for d := range c.Deliveries() {
			if d.Kind == wire.KindSignal {
				p.call.Handle(d.Payload)
			}
		}
	})
	t.Cleanup(func() { c.Close(); p.wg.Wait() })
	return p
}

// TestCallThroughSessionAndTURN: a clinician calls a patient. The offer,
// answer and candidates go through the session protocol (ephemeral
// KindSignal messages on a real relay), the media relay-only through
// stapes TURN over UDP and over TCP; audio- and video-sized RTP and
// data-channel pings flow both ways. The patient joins after the offer
// was first sent: the repeated offer reaches it.
func TestCallThroughSessionAndTURN(t *testing.T) {
	l := newLab(t)
	for _, tc := range []struct{ name, url string }{
		{"udp", "turn:" + l.addr + "?transport=udp"},
		{"tcp", "turn:" + l.addr + "?transport=tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			session := "fit-call-" + tc.name
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			clin := l.join(t, "clinician", "clin-1", session, tc.url, call.Caller, 2*time.Second)
			if _, err := clin.c.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			type result struct {
				st  call.Stats
				err error
			}
			caller := make(chan result, 1)
			go func() { st, err := clin.call.Run(ctx); caller <- result{st, err} }()

			// The first offer finds nobody: the patient joins after it.
			for clin.signals.Load() == 0 {
				if ctx.Err() != nil {
					t.Fatal("no offer sent")
				}
				time.Sleep(10 * time.Millisecond)
			}
			pat := l.join(t, "patient", "pat-1", session, tc.url, call.Callee, 0)
			cst, cerr := pat.call.Run(ctx)
			res := <-caller
			if res.err != nil || cerr != nil {
				t.Fatalf("caller: %v, callee: %v", res.err, cerr)
			}
			for _, side := range []struct {
				name string
				st   call.Stats
			}{{"caller", res.st}, {"callee", cst}} {
				st := side.st
				t.Logf("%s: connect %v, relayed %v, audio %+v, video %+v, pings %d/%d, rtt median %v max %v",
					side.name, st.ConnectTime, st.Relayed, st.Audio, st.Video, st.PingsBack, st.PingsSent, st.RTTMedian(), st.RTTMax())
				if !st.Relayed {
					t.Errorf("%s: selected pair is not relay to relay", side.name)
				}
				for _, tr := range []struct {
					name string
					ts   call.TrackStats
				}{{"audio", st.Audio}, {"video", st.Video}} {
					if tr.ts.Sent == 0 || tr.ts.Received == 0 || tr.ts.PeerSent == 0 {
						t.Errorf("%s %s: sent %d, received %d, peer sent %d: want media both ways", side.name, tr.name, tr.ts.Sent, tr.ts.Received, tr.ts.PeerSent)
					}
				}
				if st.PingsBack == 0 || st.RTTMedian() <= 0 {
					t.Errorf("%s: no data-channel round trip (%d pongs)", side.name, st.PingsBack)
				}
			}
			if res.st.Call != cst.Call {
				t.Errorf("call ids %q and %q differ", res.st.Call, cst.Call)
			}
			if res.st.Audio.PeerSent != cst.Audio.Sent || cst.Video.PeerSent != res.st.Video.Sent {
				t.Errorf("bye counts disagree: caller %+v, callee %+v", res.st, cst)
			}
			// Usage moves from live (Usage) to ended (OnUsage) when the
			// allocations close, which the call's end starts.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				bytes := l.ended.Load()
				for _, u := range l.turn.Usage() {
					bytes += u.BytesToPeer + u.BytesFromPeer
				}
				if bytes > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("TURN usage shows no relayed bytes")
				}
			}
		})
	}
}

// TestNoAnswer: a callee gives up when ctx ends, without
// leaking pion's goroutines; a caller nobody answers fails with
// ErrNoAnswer.
func TestNoAnswer(t *testing.T) {
	l := newLab(t)
	clin := l.join(t, "clinician", "clin-1", "fit-alone", "turn:"+l.addr+"?transport=udp", call.Caller, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := clin.c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	ice := []webrtc.ICEServer{{URLs: []string{"turn:" + l.addr}, Username: "u", Credential: "p"}}
	c, err := call.New(call.Config{Role: call.Caller, ICEServers: ice, ConnectTimeout: 500 * time.Millisecond, Retry: 100 * time.Millisecond},
		func(ctx context.Context, b []byte) error {
			_, err := clin.c.Send(ctx, wire.KindSignal, b, false)
			return err
		})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx); !errors.Is(err, call.ErrNoAnswer) {
		t.Fatalf("Run = %v, want ErrNoAnswer", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer wcancel()
	callee, _ := call.New(call.Config{Role: call.Callee, ICEServers: ice}, func(context.Context, []byte) error { return nil })
	if _, err := callee.Run(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("callee Run = %v, want deadline exceeded", err)
	}
}

func TestConfigChecks(t *testing.T) {
	send := func(context.Context, []byte) error { return nil }
	ice := []webrtc.ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}}}
	cases := []struct {
		name string
		cfg  call.Config
	}{
		{"no role", call.Config{ICEServers: ice}},
		{"relay-only without TURN", call.Config{Role: call.Caller}},
		{"huge packets", call.Config{Role: call.Caller, ICEServers: ice, Video: call.Stream{Rate: 30, Size: 9000}}},
		{"too fast", call.Config{Role: call.Caller, ICEServers: ice, Audio: call.Stream{Rate: 5000, Size: 100}}},
	}
	for _, tc := range cases {
		if _, err := call.New(tc.cfg, send); !errors.Is(err, call.ErrBadConfig) {
			t.Errorf("%s: err = %v, want ErrBadConfig", tc.name, err)
		}
	}
	if _, err := call.New(call.Config{Role: call.Caller, ICEServers: ice}, nil); !errors.Is(err, call.ErrBadConfig) {
		t.Errorf("nil send: err = %v, want ErrBadConfig", err)
	}
}
