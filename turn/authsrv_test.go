package turn

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

var rotatedSecret = []byte("rotated-secret-fedcba9876543210")

// TestAuthRefused is acceptance 2 (first half): expired credentials, ended
// sessions (the Ended hook and EndSession), a wrong secret and malformed
// usernames are refused with 401 and counted by reason.
func TestAuthRefused(t *testing.T) {
	ts := newServer(t, nil)
	past := &Credentials{Secrets: [][]byte{labSecret}, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}
	expiredUser, expiredPass, _, err := past.Mint("sess-old", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts.ended.Store("sess-over", true)
	overUser, overPass := ts.mint(t, "sess-over", time.Hour)
	ts.EndSession("sess-ended")
	endedUser, endedPass := ts.mint(t, "sess-ended", time.Hour)
	other := &Credentials{Secrets: [][]byte{[]byte("some-other-secret-0123456789")}}
	otherUser, otherPass, _, err := other.Mint("sess-x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, pass, reason string
	}{
		{"expired", expiredUser, expiredPass, authExpired},
		{"session ended (hook)", overUser, overPass, authEnded},
		{"session ended (EndSession)", endedUser, endedPass, authEnded},
		{"unknown secret", otherUser, otherPass, authIntegrity},
		{"malformed username", "no-expiry", "x", authMalformed},
		{"session with a colon", "1999999999:a:b", "x", authMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.counter(t, "stapes_turn_auth_failures_total", map[string]string{"reason": tt.reason})
			c := dialRaw(t, "udp4", ts.udp)
			_, err := c.allocate(tt.user, tt.pass)
			var re *respError
			if !errors.As(err, &re) || re.code != int(stun.CodeUnauthorized) {
				t.Fatalf("allocate = %v, want 401", err)
			}
			if got := ts.counter(t, "stapes_turn_auth_failures_total", map[string]string{"reason": tt.reason}); got <= before {
				t.Errorf("auth failures{reason=%s} = %v, want > %v", tt.reason, got, before)
			}
		})
	}
	if n := ts.Allocations(); n != 0 {
		t.Errorf("%d allocations after refusals", n)
	}
}

// TestServerRotation: with secrets [new, old], credentials under the old secret
// still allocate and relay (every later request picks the right key), new
// ones too; an old-secret credential past expiry is refused.
func TestServerRotation(t *testing.T) {
	ts := newServer(t, func(c *Config) { c.Credentials.Secrets = [][]byte{rotatedSecret, labSecret} })
	old := &Credentials{Secrets: [][]byte{labSecret}}
	fresh := &Credentials{Secrets: [][]byte{rotatedSecret}}
	peer := udpPeer(t, "127.0.0.2:0")
	for _, cr := range []struct {
		name string
		c    *Credentials
	}{{"old secret", old}, {"new secret", fresh}} {
		t.Run(cr.name, func(t *testing.T) {
			user, pass, _, err := cr.c.Mint("sess-rot-"+cr.name[:3], time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			c := turnClient(t, ts.udp, user, pass)
			relay := allocate(t, c)
			for i := range 3 { // permission, channel bind, then ChannelData
				if _, err := relay.WriteTo([]byte("rotated"), peer.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				if _, _, err := readWithin(peer, 5*time.Second); err != nil {
					t.Fatalf("send %d under the %s: %v", i, cr.name, err)
				}
			}
		})
	}
	pastOld := &Credentials{Secrets: [][]byte{labSecret}, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}
	user, pass, _, err := pastOld.Mint("sess-rot-exp", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialRaw(t, "udp4", ts.udp).allocate(user, pass); err == nil {
		t.Fatal("expired old-secret credential allocated")
	}
}

// TestHijackRefused is acceptance 2 (second half): on an allocation made
// with session A's credential, requests from the same 5-tuple with another
// valid credential — another session's, or a new one of the same session —
// are refused and change nothing; A's own requests still work.
func TestHijackRefused(t *testing.T) {
	ts := newServer(t, nil)
	peer := udpPeer(t, "127.0.0.2:0")
	peerAP := netip.MustParseAddrPort(peer.LocalAddr().String())
	userA, passA := ts.mint(t, "sess-a", time.Hour)
	userB, passB := ts.mint(t, "sess-b", time.Hour)
	userA2, passA2 := ts.mint(t, "sess-a", 2*time.Hour) // same session, other credential

	c := dialRaw(t, "udp4", ts.udp)
	relayA, err := c.allocate(userA, passA)
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []struct{ name, user, pass string }{{"other session", userB, passB}, {"other credential", userA2, passA2}} {
		t.Run(other.name, func(t *testing.T) {
			reqs := []struct {
				name   string
				method stun.Method
				attrs  []stun.Setter
			}{
				{"CreatePermission", stun.MethodCreatePermission, []stun.Setter{peerAttr(peerAP)}},
				{"ChannelBind", stun.MethodChannelBind, []stun.Setter{channelNumber(0x4001), peerAttr(peerAP)}},
				{"Refresh to 0", stun.MethodRefresh, []stun.Setter{lifetime(0)}},
				{"Allocate again", stun.MethodAllocate, []stun.Setter{rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}}},
			}
			for _, r := range reqs {
				resp, err := c.request(r.method, other.user, other.pass, r.attrs...)
				if err == nil && code(resp) == 0 {
					t.Errorf("%s with %s: success, want refused", r.name, other.name)
				}
			}
			if got := ts.counter(t, "stapes_turn_permissions", nil); got != 0 {
				t.Errorf("permissions = %v after refused requests, want 0", got)
			}
			if got := ts.counter(t, "stapes_turn_channels", nil); got != 0 {
				t.Errorf("channels = %v after refused requests, want 0", got)
			}
			if n := ts.Allocations(); n != 1 {
				t.Errorf("allocations = %d, want A's one", n)
			}
		})
	}
	// Nothing reached the peer, and A's allocation still works for A.
	silent(t, peer, 300*time.Millisecond)
	resp, err := c.request(stun.MethodCreatePermission, userA, passA, peerAttr(peerAP))
	if err != nil || code(resp) != 0 {
		t.Fatalf("A's own CreatePermission after the hijack attempts: %v %v", err, resp)
	}
	if err := c.sendIndication(peerAttr(peerAP), []byte("still A's")); err != nil {
		t.Fatal(err)
	}
	got, from, err := readWithin(peer, 5*time.Second)
	if err != nil || string(got) != "still A's" || from.String() != relayA.String() {
		t.Fatalf("peer got %q from %v (%v), want A's data from %v", got, from, err, relayA)
	}
}

// TestEndSession: EndSession tears down the session's allocations at once
// (the peer hears nothing more, usage is reported) and leaves other
// sessions relaying.
func TestEndSession(t *testing.T) {
	usage := make(chan Usage, 4)
	ts := newServer(t, func(c *Config) { c.OnUsage = func(u Usage) { usage <- u } })
	peer := udpPeer(t, "127.0.0.2:0")
	open := func(session string) net.PacketConn {
		u, p := ts.mint(t, session, time.Hour)
		relay := allocate(t, turnClient(t, ts.udp, u, p))
		if _, err := relay.WriteTo([]byte(session), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := readWithin(peer, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return relay
	}
	ending, staying := open("sess-end"), open("sess-stay")
	if n := ts.EndSession("sess-end"); n != 1 {
		t.Fatalf("EndSession closed %d allocations, want 1", n)
	}
	select {
	case u := <-usage:
		if u.Session != "sess-end" || u.PacketsToPeer != 1 || u.Allocations != 1 || u.Active != 0 {
			t.Errorf("usage record = %+v", u)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no usage record for the ended session")
	}
	_, _ = ending.WriteTo([]byte("after end"), peer.LocalAddr())
	if _, err := staying.WriteTo([]byte("other session"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	got, _, err := readWithin(peer, 5*time.Second)
	if err != nil || string(got) != "other session" {
		t.Fatalf("peer got %q (%v), want only the other session's packet", got, err)
	}
	silent(t, peer, 300*time.Millisecond)
}
