package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/token"
	"github.com/stapes-relay/stapes/turn"
)

// TestSimCall: 'stapes sim clinician --call' calls 'stapes sim patient
// --call' on a real relay: signalling over the session, media relay-only
// through a stapes TURN server on loopback (lab allow list 127.0.0.0/8),
// and both print what they sent, received, lost and the RTT.
func TestSimCall(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	dir := t.TempDir()
	secret := filepath.Join(dir, "turn-secret")
	if err := os.WriteFile(secret, []byte("# newest first\nsim-call-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets, err := turn.LoadSecrets(secret)
	if err != nil {
		t.Fatal(err)
	}
	pcs, err := turn.ListenUDP(context.Background(), "udp4", "127.0.0.1:0", 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cfg := turn.LocalConfig(&turn.Credentials{Secrets: secrets})
	cfg.PacketConns = pcs
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ts, err := turn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()

	tokFile := func(role string) string {
		p := filepath.Join(dir, role+".tok")
		tok := r.Token(t, token.Claims{Subject: role + "-1", Role: role, Session: "fit-sim-call", Device: "HA-1", Model: "m1"})
		if err := os.WriteFile(p, tok, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	common := []string{"--url", r.WSURL, "--insecure", "--call", "--call-loopback",
		"--turn", "turn:" + pcs[0].LocalAddr().String() + "?transport=udp", "--turn-secret-file", secret}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pctx, stopPatient := context.WithCancel(ctx)
	var patOut, patErr syncBuffer
	patDone := make(chan int, 1)
	go func() {
		patDone <- run(pctx, append([]string{"sim", "patient", "--token-file", tokFile("patient")}, common...), &patOut, &patErr)
	}()
	var clinOut, clinErr bytes.Buffer
	code := run(ctx, append([]string{"sim", "clinician", "--token-file", tokFile("clinician"), "--commands", "2", "--interval", "10ms", "--call-time", "2s"}, common...), &clinOut, &clinErr)
	// The patient prints its side once the bye is through.
	for !strings.Contains(patOut.String(), "call data channel") && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	stopPatient()
	<-patDone
	t.Logf("clinician:\n%s%s\npatient:\n%s%s", clinOut.String(), clinErr.String(), patOut.String(), patErr.String())
	if code != 0 {
		t.Fatalf("clinician sim exited %d", code)
	}
	for _, tc := range []struct {
		who, out string
		want     []string
	}{
		{"clinician", clinOut.String(), []string{"calling the patient", "relayed through TURN", "call audio: sent", "call video: sent", "pings answered, RTT median", "APPLIED on the hearing aid"}},
		{"patient", patOut.String(), []string{"relayed through TURN", "call audio: sent", "call video: sent", "pings answered"}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.out, w) {
				t.Errorf("%s output lacks %q", tc.who, w)
			}
		}
		if strings.Contains(tc.out, "failed") {
			t.Errorf("%s: a call failed", tc.who)
		}
	}
}

func TestSimCallUsage(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"sim", "clinician", "--url", "wss://a/v1/connect", "--key", "k", "--session", "s", "--call"}, "--call needs --turn"},
		{[]string{"sim", "clinician", "--url", "wss://a/v1/connect", "--key", "k", "--session", "s", "--call", "--turn", "turn:h:3478"}, "--turn-secret-file or --turn-username"},
		{[]string{"sim", "patient", "--url", "wss://a/v1/connect", "--key", "k", "--session", "s", "--call", "--turn", "turn:h:3478", "--turn-username", "u"}, "go together"},
	}
	for _, tc := range cases {
		if code, _, stderr := stapes(t, tc.args...); code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("stapes %q = %d (%s), want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
