package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Unit tests of the session logic over the in-memory pipe (pipe_test.go).

func deliver(seq uint64, payload string) wire.Frame {
	return wire.Frame{Type: wire.TypeDeliver, Seq: seq, Sender: "clin", Role: wire.RoleClinician,
		Kind: wire.KindChat, Flags: wire.FlagDurable, ClientID: "m" + payload, Payload: []byte(payload)}
}

func TestHelloAndWelcome(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, func(cfg *Config) { cfg.Session = "s1" })
	r := n.accept()
	cfgBlob := wire.AppendConfig(nil, &wire.Config{BaseVersion: 4, Params: []wire.Param{{Name: "gain", Value: 120}}})
	hello := r.admit(wire.Frame{Epoch: 2, HeadSeq: 9, MaxFrame: 1 << 15, ConnID: "c1",
		Role: wire.RolePatient, Sender: "pat-1", PingMillis: 2000, ConfigVersion: 4, Config: cfgBlob})
	if string(hello.Token) != "tok" || hello.MinVersion != 1 || hello.MaxVersion != 1 ||
		hello.Caps != wire.CapResume|wire.CapReceipts || hello.Session != "s1" || hello.Resume {
		t.Fatalf("HELLO = %+v", hello)
	}
	ev := waitEvent(t, c, EventConnected)
	w := ev.Welcome
	if ev.Transport != "pipe" || w.Epoch != 2 || w.HeadSeq != 9 || w.MaxFrame != 1<<15 || w.Role != wire.RolePatient ||
		w.Subject != "pat-1" || w.Ping != 2*time.Second || w.ConfigVersion != 4 || w.Config == nil || w.Config.Params[0].Value != 120 {
		t.Fatalf("connected event = %+v, welcome %+v", ev, w)
	}
	got, connected := c.Welcome()
	if !connected || got.ConnID != "c1" {
		t.Fatalf("Welcome() = %+v, %v", got, connected)
	}
}

func TestDuplicateDeliveriesSuppressedAcrossResume(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, func(cfg *Config) { cfg.DisableAutoAck = true })
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RolePatient})
	r.send(deliver(1, "one"))
	r.send(deliver(2, "two"))
	r.send(wire.Frame{Type: wire.TypeDeliver, Kind: wire.KindTyping, Sender: "clin"}) // ephemeral, seq 0
	r.kill()

	r = n.accept()
	hello := r.admit(wire.Frame{Role: wire.RolePatient})
	if !hello.Resume || hello.LastSeq != 2 {
		t.Fatalf("resume HELLO last_seq = %v/%d, want 2", hello.Resume, hello.LastSeq)
	}
	// A relay that resends what the client has must not cause duplicates.
	r.send(deliver(1, "one"))
	r.send(deliver(2, "two"))
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 2, RefSeq: 1, Stage: wire.StageReceived, Role: wire.RoleObserver})
	r.send(deliver(3, "three"))

	var got []string
	for range 4 {
		d := recvDelivery(t, c)
		got = append(got, string(d.Payload))
	}
	if want := "one two  three"; join(got) != want {
		t.Fatalf("deliveries %q, want %q", join(got), want)
	}
	if s := c.Stats(); s.Duplicates != 3 {
		t.Errorf("Stats.Duplicates = %d, want 3", s.Duplicates)
	}
	// The reader records a seq once the application has taken its
	// delivery: a moment after the channel handed it over.
	deadline := time.Now().Add(testWait)
	for c.LastSeq() != 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // bounded poll of the reader's bookkeeping
	}
	if c.LastSeq() != 3 {
		t.Errorf("LastSeq = %d, want 3", c.LastSeq())
	}
}

func TestDurableSendsRetriedInOrderUntilPersisted(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	ctx := ctxWait(t)
	// Queued before any connection exists.
	var sends []*Sent
	for _, p := range []string{"a", "b", "c"} {
		s, err := c.SendWithID(ctx, "id-"+p, wire.KindChat, []byte(p), true)
		if err != nil {
			t.Fatal(err)
		}
		sends = append(sends, s)
	}
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician})
	for _, want := range []string{"id-a", "id-b", "id-c"} {
		f, class := r.recv()
		if f.Type != wire.TypeSend || f.ClientID != want || !f.Durable() || class != wire.ClassDurable {
			t.Fatalf("frame %v %q class %v, want durable SEND %s", f.Type, f.ClientID, class, want)
		}
	}
	r.send(wire.Frame{Type: wire.TypePersisted, ClientID: "id-a", Seq: 5})
	if seq, _, err := sends[0].Persisted(ctx); seq != 5 || err != nil {
		t.Fatalf("Persisted(a) = %d, %v", seq, err)
	}
	r.kill()

	// Reconnect: b and c again, same ids, in order; a is not rewritten.
	r = n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician})
	for _, want := range []string{"id-b", "id-c"} {
		if f := r.expect(wire.TypeSend); f.ClientID != want {
			t.Fatalf("rewritten SEND %q, want %q", f.ClientID, want)
		}
	}
	r.send(wire.Frame{Type: wire.TypePersisted, ClientID: "id-b", Seq: 6})
	r.send(wire.Frame{Type: wire.TypePersisted, ClientID: "id-c", Seq: 7})
	for i, s := range sends[1:] {
		if seq, _, err := s.Persisted(ctx); seq != uint64(6+i) || err != nil {
			t.Fatalf("Persisted(%s) = %d, %v", s.ClientID(), seq, err)
		}
	}
	if got := c.Stats().Rewrites; got != 2 {
		t.Errorf("Stats.Rewrites = %d, want 2", got)
	}
}

func TestSendRefusedByRelay(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	ctx := ctxWait(t)
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician})
	bad, _ := c.SendWithID(ctx, "bad", wire.KindConfig, wire.AppendConfig(nil, &wire.Config{BaseVersion: 1}), true)
	good, _ := c.SendWithID(ctx, "good", wire.KindChat, []byte("hi"), true)
	r.expect(wire.TypeSend)
	r.expect(wire.TypeSend)
	r.send(wire.Frame{Type: wire.TypeError, Code: wire.CodeConflict, RefClientID: "bad", ConfigVersion: 3, Message: "head is 3"})
	_, _, err := bad.Persisted(ctx)
	var e *Error
	if !errors.As(err, &e) || e.Code != wire.CodeConflict || e.ConfigVersion != 3 || e.ClientID != "bad" || e.Fatal {
		t.Fatalf("Persisted(bad) err = %#v, want conflict about bad with config_version 3", err)
	}
	wantCode(t, bad.Err(), wire.CodeConflict)
	r.kill()

	r = n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician})
	if f := r.expect(wire.TypeSend); f.ClientID != "good" {
		t.Fatalf("after reconnect SEND %q, want only good", f.ClientID)
	}
	r.send(wire.Frame{Type: wire.TypePersisted, ClientID: "good", Seq: 1})
	if _, _, err := good.Persisted(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSendRetryableErrorRetriedWithBackoff(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	ctx := ctxWait(t)
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician})
	s, _ := c.SendWithID(ctx, "x", wire.KindChat, []byte("hi"), true)
	r.expect(wire.TypeSend)
	r.send(wire.Frame{Type: wire.TypeError, Code: wire.CodeOverloaded, RefClientID: "x"})
	if f := r.expect(wire.TypeSend); f.ClientID != "x" {
		t.Fatalf("retried SEND %q, want x", f.ClientID)
	}
	r.send(wire.Frame{Type: wire.TypeError, Code: wire.CodeUnavailable, RefClientID: "x"})
	r.expect(wire.TypeSend)
	r.send(wire.Frame{Type: wire.TypePersisted, ClientID: "x", Seq: 3})
	if seq, _, err := s.Persisted(ctx); seq != 3 || err != nil {
		t.Fatalf("Persisted = %d, %v", seq, err)
	}
}

func TestReceiptsEndMessageAndFreeSlot(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, func(cfg *Config) { cfg.MaxPending = 1 })
	ctx := ctxWait(t)
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician})
	cmd := wire.AppendConfig(nil, &wire.Config{BaseVersion: 1, Params: []wire.Param{{Name: "gain", Value: 5}}})
	s, err := c.SendWithID(ctx, "cfg1", wire.KindConfig, cmd, true)
	if err != nil {
		t.Fatal(err)
	}
	// The only slot is taken: a second Send waits, here until its ctx ends.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = c.Send(short, wire.KindChat, []byte("x"), true)
	cancel()
	if !errors.Is(err, ErrTooManyPending) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send at MaxPending err = %v, want ErrTooManyPending and deadline", err)
	}

	r.expect(wire.TypeSend)
	r.send(wire.Frame{Type: wire.TypePersisted, ClientID: "cfg1", Seq: 4})
	// A receipt about another sender's message that reuses our client id.
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 5, RefSeq: 3, RefClientID: "cfg1", Stage: wire.StageApplied, Sender: "obs", Role: wire.RoleObserver})
	// An observer's receipt is recorded but ends nothing.
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 6, RefSeq: 4, RefClientID: "cfg1", Stage: wire.StageReceived, Sender: "obs", Role: wire.RoleObserver})
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 8, RefSeq: 4, RefClientID: "cfg1", Stage: wire.StageReceived, Sender: "pat", Role: wire.RolePatient})
	if rc, err := s.Wait(ctx, wire.StageReceived); err != nil || rc.Seq != 6 || rc.Sender != "obs" {
		t.Fatalf("Wait(received) = %+v, %v", rc, err)
	}
	select {
	case <-s.Done():
		t.Fatal("config message ended at received, want it kept until applied")
	default:
	}
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 9, RefSeq: 4, RefClientID: "cfg1", Stage: wire.StageApplied, Sender: "pat", Role: wire.RolePatient})
	rc, err := s.Final(ctx)
	if err != nil || rc.Stage != wire.StageApplied || rc.Seq != 9 || len(s.Receipts()) != 3 {
		t.Fatalf("Final = %+v, %v", rc, err)
	}
	if _, err := s.Wait(ctx, wire.StageRejected); !errors.Is(err, ErrNoReceipt) {
		t.Fatalf("Wait(rejected) after applied err = %v, want ErrNoReceipt", err)
	}
	// The slot is free again.
	if _, err := c.Send(ctx, wire.KindChat, []byte("x"), true); err != nil {
		t.Fatalf("Send after final receipt: %v", err)
	}
}

func TestReceiptBeforePersistedAfterReconnect(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	ctx := ctxWait(t)
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician})
	s, _ := c.SendWithID(ctx, "m1", wire.KindChat, []byte("hi"), true)
	r.expect(wire.TypeSend)
	r.kill() // committed as seq 1, but PERSISTED was lost with the connection

	r = n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician, HeadSeq: 2})
	// The backlog comes first: the patient's receipt of seq 1 ...
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 2, RefSeq: 1, RefClientID: "m1", Stage: wire.StageReceived, Sender: "pat", Role: wire.RolePatient})
	// ... then the relay answers the rewritten SEND with the original seq.
	if f := r.expect(wire.TypeSend); f.ClientID != "m1" {
		t.Fatalf("rewritten SEND %q", f.ClientID)
	}
	r.send(wire.Frame{Type: wire.TypePersisted, ClientID: "m1", Seq: 1})
	rc, err := s.Final(ctx)
	if err != nil || rc.Stage != wire.StageReceived || rc.RefSeq != 1 {
		t.Fatalf("Final = %+v, %v", rc, err)
	}
}

func TestAutoAckResentUntilConfirmed(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RolePatient})
	r.send(deliver(1, "cmd"))
	recvDelivery(t, c)
	if a := r.expect(wire.TypeAck); a.Seq != 1 || a.Stage != wire.StageReceived {
		t.Fatalf("ACK = %+v", a)
	}
	r.kill() // before the RECEIPT

	r = n.accept()
	r.admit(wire.Frame{Role: wire.RolePatient})
	if a := r.expect(wire.TypeAck); a.Seq != 1 {
		t.Fatalf("resent ACK seq %d, want 1", a.Seq)
	}
	// The clinician's receipt of something else does not confirm our ack.
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 2, RefSeq: 1, Stage: wire.StageReceived, Sender: "clin", Role: wire.RoleClinician})
	r.kill()

	r = n.accept()
	r.admit(wire.Frame{Role: wire.RolePatient})
	r.expect(wire.TypeAck)
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 3, RefSeq: 1, Stage: wire.StageReceived, Sender: "pat", Role: wire.RolePatient})
	r.kill()

	// Confirmed: the next connection starts with our marker SEND, no ACK.
	r = n.accept()
	r.admit(wire.Frame{Role: wire.RolePatient})
	if _, err := c.SendWithID(ctxWait(t), "marker", wire.KindChat, nil, true); err != nil {
		t.Fatal(err)
	}
	if f := r.expect(wire.TypeSend); f.ClientID != "marker" {
		t.Fatalf("SEND %q", f.ClientID)
	}
}

func TestAckAppliedWaitsForReceipt(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, func(cfg *Config) { cfg.DisableAutoAck = true })
	ctx := ctxWait(t)
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RolePatient})
	if err := c.Ack(ctx, 1, wire.StageApplied, ""); !errors.Is(err, ErrUnknownSeq) {
		t.Fatalf("Ack before delivery err = %v, want ErrUnknownSeq", err)
	}
	r.send(deliver(1, "cmd"))
	recvDelivery(t, c)

	acked := make(chan error, 1)
	go func() { acked <- c.Ack(ctx, 1, wire.StageRejected, "base_mismatch") }()
	if a := r.expect(wire.TypeAck); a.Seq != 1 || a.Stage != wire.StageRejected || a.Reason != "base_mismatch" {
		t.Fatalf("ACK = %+v", a)
	}
	if err := c.Ack(ctx, 1, wire.StageApplied, ""); !errors.Is(err, ErrAlreadyFinal) {
		t.Fatalf("second final Ack err = %v, want ErrAlreadyFinal", err)
	}
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 2, RefSeq: 1, Stage: wire.StageRejected, Reason: "base_mismatch", Sender: "pat", Role: wire.RolePatient})
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("Ack = %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("Ack did not return after its RECEIPT")
	}
}

func TestPingPongAndKeepalive(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, func(cfg *Config) { cfg.PingInterval = 20 * time.Millisecond })
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RolePatient})
	r.send(wire.Frame{Type: wire.TypePing, Nonce: 77})
	if f := r.expect(wire.TypePong); f.Nonce != 77 {
		t.Fatalf("PONG nonce %d, want 77", f.Nonce)
	}
	// Silent relay: the client pings, then gives the connection up.
	if f, class := r.recv(); f.Type != wire.TypePing || class != wire.ClassControl {
		t.Fatalf("got %v on %v, want PING on control", f.Type, class)
	}
	r.waitClosed()
	if ev := waitEvent(t, c, EventDisconnected); !errors.Is(ev.Err, ErrKeepalive) {
		t.Fatalf("disconnected with %v, want ErrKeepalive", ev.Err)
	}
	n.accept().admit(wire.Frame{Role: wire.RolePatient})
	waitEvent(t, c, EventResumed)
}

func TestPermanentErrorStopsClient(t *testing.T) {
	tests := []struct {
		name  string
		code  wire.Code
		fatal bool
	}{
		{"unauthorized", wire.CodeUnauthorized, true},
		{"expired", wire.CodeExpired, true},
		{"forbidden", wire.CodeForbidden, true},
		{"version", wire.CodeVersion, true},
		{"bad resume", wire.CodeBadResume, true},
		{"draining is retried", wire.CodeDraining, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newFakeNet(t)
			c := newPipeClient(t, n, nil)
			ctx := ctxWait(t)
			s, _ := c.Send(ctx, wire.KindChat, []byte("x"), true)
			r := n.accept()
			r.expect(wire.TypeHello)
			r.send(wire.Frame{Type: wire.TypeError, Code: tt.code, Fatal: true})
			if !tt.fatal {
				n.accept().admit(wire.Frame{})
				waitEvent(t, c, EventConnected)
				return
			}
			select {
			case <-c.Done():
			case <-time.After(testWait):
				t.Fatal("client did not stop")
			}
			wantCode(t, c.Err(), tt.code)
			wantCode(t, s.Err(), tt.code)
			if ev := waitEvent(t, c, EventFailed); CodeOf(ev.Err) != tt.code {
				t.Fatalf("failed event err %v", ev.Err)
			}
			if _, err := c.Send(ctx, wire.KindChat, nil, true); CodeOf(err) != tt.code {
				t.Fatalf("Send after stop err = %v", err)
			}
		})
	}
}

func TestGoawayRedirect(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, func(cfg *Config) {
		cfg.URLs = []string{"wss://a.test/v1/connect", "wss://b.test/v1/connect"}
	})
	ctx := ctxWait(t)
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician})
	s, _ := c.SendWithID(ctx, "m", wire.KindChat, []byte("x"), true)
	r.expect(wire.TypeSend)
	r.send(wire.Frame{Type: wire.TypeGoaway, Code: wire.CodeDraining, Redirect: "quic://c.test:8443", AfterMillis: 5000})
	if ev := waitEvent(t, c, EventGoaway); ev.Redirect != "quic://c.test:8443" {
		t.Fatalf("goaway event %+v", ev)
	}
	// In flight: no new SEND may go out, but the answer is still read.
	if _, err := c.Send(ctx, wire.KindTyping, nil, false); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("ephemeral Send after GOAWAY err = %v, want ErrNotConnected", err)
	}
	r.send(wire.Frame{Type: wire.TypePersisted, ClientID: "m", Seq: 1})
	r.waitClosed() // nothing in flight any more: the client leaves at once

	r = n.accept()
	if r.url != "quic://c.test:8443" {
		t.Fatalf("dialed %s after GOAWAY, want the redirect", r.url)
	}
	if hello := r.admit(wire.Frame{Role: wire.RoleClinician}); !hello.Resume {
		t.Fatal("HELLO after GOAWAY does not resume")
	}
	if seq, _, _ := s.Persisted(ctx); seq != 1 {
		t.Fatalf("seq %d", seq)
	}
	r.kill()
	if r = n.accept(); r.url != "wss://b.test/v1/connect" {
		t.Fatalf("dialed %s, want rotation to continue with b", r.url)
	}
}

func TestCheckRedirect(t *testing.T) {
	tests := []struct {
		name, from, to string
		ok             bool
	}{
		{"wss to quic", "wss://a/v1/connect", "quic://b:8443", true},
		{"quic to wss", "quic://a:8443", "wss://b/v1/connect", true},
		{"ws to ws", "ws://a/v1/connect", "ws://b/v1/connect", true},
		{"downgrade wss to ws", "wss://a/v1/connect", "ws://b/v1/connect", false},
		{"downgrade quic to ws", "quic://a:1", "ws://b/v1/connect", false},
		{"unknown scheme", "wss://a/v1/connect", "https://b/", false},
		{"no host", "wss://a/v1/connect", "quic://", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkRedirect(tt.from, tt.to); (err == nil) != tt.ok {
				t.Errorf("checkRedirect(%s, %s) = %v, want ok %v", tt.from, tt.to, err, tt.ok)
			}
		})
	}
}

func TestStaleEpochRefused(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, func(cfg *Config) {
		cfg.URLs = []string{"wss://new.test/v1/connect", "wss://old.test/v1/connect"}
	})
	r := n.accept()
	r.admit(wire.Frame{Epoch: 3})
	waitEvent(t, c, EventConnected)
	r.kill()
	waitEvent(t, c, EventDisconnected)
	r = n.accept() // a partitioned former home
	r.admit(wire.Frame{Epoch: 2})
	if ev := waitEvent(t, c, EventDisconnected); !errors.Is(ev.Err, ErrStaleEpoch) {
		t.Fatalf("disconnect err %v, want ErrStaleEpoch", ev.Err)
	}
	n.accept().admit(wire.Frame{Epoch: 4})
	waitEvent(t, c, EventResumed)
}

func TestEphemeralSends(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, func(cfg *Config) { cfg.EphemeralQueue = 1 })
	ctx := ctxWait(t)
	if _, err := c.Send(ctx, wire.KindTelemetry, []byte("t"), false); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send before connect err = %v, want ErrNotConnected", err)
	}
	if _, err := c.Send(ctx, wire.KindConfig, wire.AppendConfig(nil, &wire.Config{}), false); !errors.Is(err, ErrMustBeDurable) {
		t.Fatalf("ephemeral config err = %v, want ErrMustBeDurable", err)
	}
	r := n.accept()
	r.admit(wire.Frame{})
	if _, err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	tel, err := c.Send(ctx, wire.KindTelemetry, []byte("t"), false)
	if err != nil {
		t.Fatal(err)
	}
	f, class := r.recv()
	if f.Type != wire.TypeSend || f.Durable() || class != wire.ClassTelemetry {
		t.Fatalf("got %v durable=%v on %v, want ephemeral SEND on telemetry", f.Type, f.Durable(), class)
	}
	<-tel.Done()
	if _, _, err := tel.Persisted(ctx); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("Persisted of ephemeral err = %v", err)
	}
	sig, _ := c.Send(ctx, wire.KindSignal, []byte("ice"), false)
	if _, class := r.recv(); class != wire.ClassSignal {
		t.Fatalf("signal on %v", class)
	}
	<-sig.Done()
}

func TestSendValidation(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	ctx := ctxWait(t)
	long := make([]byte, wire.MaxIDLen+1)
	for i := range long {
		long[i] = 'x'
	}
	tests := []struct {
		name    string
		id      string
		kind    wire.Kind
		payload []byte
		want    error
	}{
		{"empty id", "", wire.KindChat, nil, ErrBadID},
		{"long id", string(long), wire.KindChat, nil, ErrBadID},
		{"bad config", "c", wire.KindConfig, []byte{0xff}, wire.ErrTruncated},
		{"too large", "big", wire.KindChat, make([]byte, wire.DefaultMaxFrame), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.SendWithID(ctx, tt.id, tt.kind, tt.payload, true); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := c.SendWithID(ctx, "dup", wire.KindChat, nil, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendWithID(ctx, "dup", wire.KindChat, nil, true); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("pending id reused err = %v, want ErrDuplicateID", err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	ctx := ctxWait(t)
	s, _ := c.Send(ctx, wire.KindChat, []byte("x"), true)
	r := n.accept()
	r.admit(wire.Frame{})
	r.expect(wire.TypeSend)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if !errors.Is(s.Err(), ErrClosed) || !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("after Close: send err %v, client err %v", s.Err(), c.Err())
	}
	if _, ok := <-c.Deliveries(); ok {
		t.Fatal("Deliveries still open")
	}
	r.waitClosed()
}

func TestConfigValidation(t *testing.T) {
	tok := func(context.Context) ([]byte, error) { return nil, nil }
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no urls", Config{Token: tok}, ErrInvalidConfig},
		{"no token", Config{URLs: []string{"wss://a/"}}, ErrInvalidConfig},
		{"bad scheme", Config{URLs: []string{"https://a/"}, Token: tok}, ErrUnsupportedURL},
		{"backoff inverted", Config{URLs: []string{"quic://a:1"}, Token: tok, BackoffMin: time.Second, BackoffMax: time.Millisecond}, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); !errors.Is(err, tt.want) {
				t.Errorf("New err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOwnAcksConfirmedBySubject(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	welcome := wire.Frame{Role: wire.RolePatient, Sender: "pat-1"}
	r := n.accept()
	r.admit(welcome)
	r.send(deliver(1, "cmd"))
	recvDelivery(t, c)
	if a := r.expect(wire.TypeAck); a.Seq != 1 || a.Stage != wire.StageReceived {
		t.Fatalf("ACK = %+v", a)
	}
	// The patient's second phone shares the role but not the subject: its
	// receipt is not ours, so our ack stays unconfirmed.
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 2, RefSeq: 1, Stage: wire.StageReceived, Sender: "pat-2", Role: wire.RolePatient})
	r.kill()

	r = n.accept()
	r.admit(welcome)
	if a := r.expect(wire.TypeAck); a.Seq != 1 || a.Stage != wire.StageReceived {
		t.Fatalf("resent ACK = %+v, want received of seq 1", a)
	}
	// Our own subject confirms it, whatever role the receipt names.
	r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 3, RefSeq: 1, Stage: wire.StageReceived, Sender: "pat-1", Role: wire.RolePatient})
	r.kill()

	r = n.accept()
	r.admit(welcome)
	if _, err := c.SendWithID(ctxWait(t), "marker", wire.KindChat, nil, true); err != nil {
		t.Fatal(err)
	}
	if f := r.expect(wire.TypeSend); f.ClientID != "marker" {
		t.Fatalf("got %v %q, want SEND marker (the confirmed ACK not resent)", f.Type, f.ClientID)
	}
}

func TestFinalReceiptOfAnotherSubjectEndsFinalAck(t *testing.T) {
	tests := []struct {
		name  string
		stage wire.Stage // the other participant's final stage
		want  error
	}{
		{"same stage", wire.StageApplied, nil},
		{"other stage", wire.StageRejected, ErrAlreadyFinal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newFakeNet(t)
			c := newPipeClient(t, n, func(cfg *Config) { cfg.DisableAutoAck = true })
			ctx := ctxWait(t)
			r := n.accept()
			r.admit(wire.Frame{Role: wire.RoleClinician, Sender: "clin-1"})
			r.send(deliver(1, "chat"))
			recvDelivery(t, c)
			acked := make(chan error, 1)
			go func() { acked <- c.Ack(ctx, 1, wire.StageApplied, "") }()
			r.expect(wire.TypeAck)
			// The patient's final ack of the chat message was recorded
			// first; the relay ignores ours and sends no RECEIPT for it.
			r.send(wire.Frame{Type: wire.TypeReceipt, Seq: 2, RefSeq: 1, Stage: tt.stage, Sender: "pat-1", Role: wire.RolePatient})
			select {
			case err := <-acked:
				if !errors.Is(err, tt.want) {
					t.Fatalf("Ack = %v, want %v", err, tt.want)
				}
			case <-time.After(testWait):
				t.Fatal("Ack did not return after another subject's final RECEIPT")
			}
		})
	}
}

func TestSendPayloadLimit(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	ctx := ctxWait(t)
	tests := []struct {
		name    string
		size    int
		durable bool
		want    error
	}{
		{"at limit", 1024 - sendOverhead, true, nil},
		{"over limit", 1024 - sendOverhead + 1, true, ErrTooLarge},
		{"ephemeral at limit", 1024 - sendOverhead, false, nil},
		{"ephemeral over limit", 1024 - sendOverhead + 1, false, ErrTooLarge},
	}
	// Before WELCOME the default frame limit applies.
	for _, tt := range []struct {
		size int
		want error
	}{
		{wire.DefaultMaxFrame - sendOverhead, nil},
		{wire.DefaultMaxFrame - sendOverhead + 1, ErrTooLarge},
	} {
		if _, err := c.Send(ctx, wire.KindChat, make([]byte, tt.size), true); !errors.Is(err, tt.want) {
			t.Fatalf("before WELCOME, Send of %d bytes err = %v, want %v", tt.size, err, tt.want)
		}
	}
	r := n.accept()
	r.admit(wire.Frame{Role: wire.RoleClinician, MaxFrame: 1024})
	if _, err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Send(ctx, wire.KindChat, make([]byte, tt.size), tt.durable)
			if !errors.Is(err, tt.want) {
				t.Errorf("Send of %d bytes err = %v, want %v", tt.size, err, tt.want)
			}
		})
	}
}
