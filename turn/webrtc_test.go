package turn

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestWebRTCRelayOnly is acceptance 1: two pion/webrtc peers with ICE
// transport policy "relay" meet through stapes TURN — over UDP, TCP and TLS
// — and exchange media-sized RTP (1200-byte payloads) and data-channel
// messages. Both relay candidates are on this one server, so every packet
// goes relay to relay (the policy's one exception to relay_self).
func TestWebRTCRelayOnly(t *testing.T) {
	ts := newServer(t, nil)
	for _, tc := range []struct{ name, url string }{
		{"udp", "turn:" + ts.udp + "?transport=udp"},
		{"tcp", "turn:" + ts.tcp + "?transport=tcp"},
		{"tls", "turns:" + ts.tls + "?transport=tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.usageBytes()
			session := "call-" + tc.name
			callThroughTURN(t, ts, session, tc.url)
			if got := ts.usageBytes() - before; got < 50*1200 {
				t.Errorf("TURN relayed %d bytes for the call, want at least the media", got)
			}
		})
	}
}

// usageBytes is the relayed bytes to peers, live and closed, from metrics.
func (ts *testServer) usageBytes() uint64 {
	t := ts.totals()
	return t.bytesTo
}

func callThroughTURN(t *testing.T, ts *testServer, session, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	newPeer := func(who string) *webrtc.PeerConnection {
		user, pass := ts.mint(t, session, time.Hour)
		se := webrtc.SettingEngine{}
		se.SetIncludeLoopbackCandidate(true)
		se.SetICETimeouts(10*time.Second, 20*time.Second, time.Second)
		api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
		pc, err := api.NewPeerConnection(webrtc.Configuration{
			ICEServers:         []webrtc.ICEServer{{URLs: []string{url}, Username: user, Credential: pass}},
			ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		})
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	caller, callee := newPeer("caller"), newPeer("callee")

	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "fitting")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := caller.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	dc, err := caller.CreateDataChannel("fitting", nil)
	if err != nil {
		t.Fatal(err)
	}

	var rtpGot atomic.Int64
	callee.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if len(p.Payload) == 1200 {
				rtpGot.Add(1)
			}
		}
	})
	echoed := make(chan []byte, 64)
	callee.OnDataChannel(func(d *webrtc.DataChannel) {
		d.OnMessage(func(m webrtc.DataChannelMessage) { _ = d.Send(m.Data) })
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case echoed <- m.Data:
		default:
		}
	})
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })

	// Non-trickle: exchange complete descriptions.
	offer, err := caller.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(caller)
	if err := caller.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := callee.SetRemoteDescription(*caller.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := callee.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done = webrtc.GatheringCompletePromise(callee)
	if err := callee.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := caller.SetRemoteDescription(*callee.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	for _, sdp := range []string{caller.LocalDescription().SDP, callee.LocalDescription().SDP} {
		if !bytes.Contains([]byte(sdp), []byte("typ relay")) {
			t.Fatalf("no relay candidate gathered through stapes TURN:\n%s", sdp)
		}
	}
	select {
	case <-opened:
	case <-ctx.Done():
		t.Fatalf("data channel did not open over %s", url)
	}
	pair, err := selectedPair(caller)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("selected pair %v / %v, want relay / relay", pair.Local.Typ, pair.Remote.Typ)
	}

	// Media: 1200-byte RTP payloads until 50 have arrived (bounded).
	payload := make([]byte, 1200)
	for seq := uint16(0); rtpGot.Load() < 50; seq++ {
		if seq > 2000 || ctx.Err() != nil {
			t.Fatalf("only %d of the RTP packets arrived", rtpGot.Load())
		}
		_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 1}, Payload: payload})
		time.Sleep(5 * time.Millisecond) // pacing, like a camera
	}
	// Data channel: messages of several sizes echo back intact.
	for i, n := range []int{1, 100, 1200, 16000} {
		msg := make([]byte, n)
		_, _ = rand.Read(msg)
		if err := dc.Send(msg); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-echoed:
			if !bytes.Equal(got, msg) {
				t.Fatalf("message %d: echo differs", i)
			}
		case <-ctx.Done():
			t.Fatalf("message %d (%d bytes) not echoed", i, n)
		}
	}
}

func selectedPair(pc *webrtc.PeerConnection) (*webrtc.ICECandidatePair, error) {
	sctp := pc.SCTP()
	if sctp == nil {
		return nil, errors.New("no SCTP transport")
	}
	p, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("no selected pair")
	}
	return p, nil
}
