package main

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOpsAndDrain: /healthz, /readyz and /metrics answer; SIGTERM makes
// readiness fail, sends GOAWAY to connected clients, and relayd exits 0
// once they have left.
func TestOpsAndDrain(t *testing.T) {
	dir, keyring, signer, addr := childSetup(t)
	rd := startRelayd(t, dir, keyring, addr, "--drain-grace", "10s", "--drain-timeout", "20s")
	ops := "http://" + <-rd.ops

	if code, _ := get(t, ops+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := get(t, ops+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}
	tok, _ := signer.Sign(token.Claims{Tenant: "t1", Subject: "c1", Role: "clinician", Session: "ops", Expiry: time.Now().Add(time.Hour).Unix(), ID: "1"})
	cl := relaytest.DialAddr(t, addr, rd.tls, "quic")
	cl.Hello(tok, false, 0)
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "a", Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("x")})
	cl.Expect(wire.TypePersisted)

	_, metrics := get(t, ops+"/metrics")
	for _, name := range []string{
		"stapes_relay_sessions 1", `stapes_relay_connections{transport="quic"} 1`,
		"stapes_relay_commit_seconds_bucket", `stapes_relay_messages_received_total{kind="chat",transport="quic"} 1`,
		`stapes_relay_drops_total{reason="queue_full"} 0`, "stapes_relay_resumes_total", "stapes_storage_",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	if strings.Contains(metrics, "c1") {
		t.Errorf("/metrics mentions a subject id")
	}

	if err := rd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	g := cl.Expect(wire.TypeGoaway)
	if g.Code != wire.CodeDraining || g.AfterMillis != 10000 {
		t.Fatalf("goaway = %+v", g)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := get(t, ops+"/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d while draining", code)
		}
		time.Sleep(10 * time.Millisecond) // polling another process
	}
	// A new session is refused while draining.
	late := relaytest.DialAddr(t, addr, rd.tls, "ws")
	late.Send(&wire.Frame{Type: wire.TypeHello, Token: tok})
	if code, _ := late.ClosedWith(5 * time.Second); code != wire.CodeDraining {
		t.Fatalf("HELLO while draining: %v, want draining", code)
	}
	late.Close()
	cl.Close() // the client leaves; relayd may now exit
	select {
	case err := <-rd.exit:
		rd.exit <- err
		if err != nil {
			t.Fatalf("relayd exited with %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("relayd did not exit after its clients left")
	}
}
