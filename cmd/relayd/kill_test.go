package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// TestMain lets the test binary run as relayd: the SIGKILL test starts
// itself as a child process with RELAYD_CHILD=1.
func TestMain(m *testing.M) {
	if os.Getenv("RELAYD_CHILD") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

type child struct {
	cmd  *exec.Cmd
	addr string
	tls  *tls.Config
	ops  chan string // ops address, from the "relayd ready" log line
	exit chan error
}

func startRelayd(t *testing.T, dir, keyring, addr string, extra ...string) *child {
	t.Helper()
	certFile := filepath.Join(dir, "cert.pem")
	os.Remove(certFile)
	args := append([]string{"--listen", addr, "--ops", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
		"--keyring", keyring, "--self-signed-out", certFile, "--log-level", "info"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "RELAYD_CHILD=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, addr: addr, ops: make(chan string, 1), exit: make(chan error, 1)}
	go c.watch(stderr)
	t.Cleanup(func() { c.kill() })
	// Generous: under the race detector on a loaded 2-core machine a
	// start can take several seconds (a bounded poll, not a speed check).
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if pemBytes, err := os.ReadFile(certFile); err == nil {
			if blk, _ := pem.Decode(pemBytes); blk != nil {
				if cert, err := x509.ParseCertificate(blk.Bytes); err == nil {
					pool := x509.NewCertPool()
					pool.AddCert(cert)
					c.tls = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
					if conn, err := relaytest.TryDial(addr, c.tls, "ws"); err == nil {
						conn.Close()
						return c
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond) // polling a child process for readiness
	}
	t.Fatal("relayd did not come up")
	return nil
}

// watch copies the child's log to the test's stderr, picks out the ops
// address, and reaps the child when its output ends.
func (c *child) watch(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		var rec struct {
			Msg string `json:"msg"`
			Ops string `json:"ops"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "relayd ready" {
			c.ops <- rec.Ops
		}
		if os.Getenv("STAPES_TEST_LOG") != "" {
			fmt.Fprintf(os.Stderr, "relayd: %s\n", line)
		}
	}
	c.exit <- c.cmd.Wait()
}

// kill sends SIGKILL to the child by pid and waits until it is gone.
func (c *child) kill() {
	if c.cmd.Process.Kill() == nil {
		<-c.exit
		c.exit <- nil
	}
}

func randDuration(min, max time.Duration) time.Duration {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(max-min)))
	return min + time.Duration(n.Int64())
}

// TestSIGKILLLosesNothingAcknowledged kills relayd at random points while
// a clinician sends; after each restart the clinician retries what was not
// acknowledged (same client ids). In the end every PERSISTED message is in
// the log exactly once with the seq it was acknowledged with, and the log
// holds nothing that was never sent.
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	dir, keyring, signer, addr := childSetup(t)
	mint := func(role, subject string) []byte {
		tok, err := signer.Sign(token.Claims{Tenant: "t1", Subject: subject, Role: role, Session: "kill",
			Expiry: time.Now().Add(time.Hour).Unix(), IssuedAt: time.Now().Unix(), ID: subject + role})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	persisted := map[string]uint64{} // client id → seq it was acknowledged with
	sent := map[string]bool{}
	var pending []string // sent, not acknowledged: retried next round
	next := 0
	const rounds = 6
	for round := range rounds {
		rd := startRelayd(t, dir, keyring, addr)
		transport := []string{"ws", "quic"}[round%2]
		cl := relaytest.DialAddr(t, addr, rd.tls, transport)
		cl.Hello(mint("clinician", "c1"), false, 0)
		killAt := time.Now().Add(randDuration(50*time.Millisecond, 400*time.Millisecond))
		retry := pending
		pending = nil
		inflight := map[string]bool{}
		for time.Now().Before(killAt) {
			for len(inflight) < 32 {
				var id string
				if len(retry) > 0 {
					id, retry = retry[0], retry[1:]
				} else {
					id = fmt.Sprintf("m%d", next)
					next++
				}
				sent[id] = true
				inflight[id] = true
				if err := cl.TrySend(&wire.Frame{Type: wire.TypeSend, ClientID: id, Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte(id)}); err != nil {
					t.Fatalf("round %d: send: %v", round, err)
				}
			}
			f, err := cl.Next(5 * time.Second)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if f.Type != wire.TypePersisted {
				t.Fatalf("round %d: got %v %v", round, f.Type, f.Code)
			}
			if old, ok := persisted[f.ClientID]; ok && old != f.Seq {
				t.Fatalf("%s acknowledged as seq %d, earlier as %d", f.ClientID, f.Seq, old)
			}
			persisted[f.ClientID] = f.Seq
			delete(inflight, f.ClientID)
		}
		rd.kill() // SIGKILL while sends are in flight
		cl.Close()
		for id := range inflight {
			pending = append(pending, id)
		}
		pending = append(pending, retry...)
	}
	// Final round: retry the rest to completion, then read the whole log.
	rd := startRelayd(t, dir, keyring, addr)
	cl := relaytest.DialAddr(t, addr, rd.tls, "ws")
	cl.Hello(mint("clinician", "c1"), false, 0)
	for _, id := range pending {
		cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: id, Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte(id)})
		f := cl.Expect(wire.TypePersisted)
		if old, ok := persisted[f.ClientID]; ok && old != f.Seq {
			t.Fatalf("%s acknowledged as seq %d, earlier as %d", f.ClientID, f.Seq, old)
		}
		persisted[f.ClientID] = f.Seq
	}
	pt := relaytest.DialAddr(t, addr, rd.tls, "quic")
	w := pt.Hello(mint("patient", "p1"), false, 0)
	seen := map[string]uint64{}
	for seq := uint64(1); seq <= w.HeadSeq; seq++ {
		f := pt.Expect(wire.TypeDeliver)
		if f.Seq != seq {
			t.Fatalf("log seq %d, want %d (gap)", f.Seq, seq)
		}
		if _, dup := seen[f.ClientID]; dup {
			t.Fatalf("%s is in the log twice", f.ClientID)
		}
		if !sent[f.ClientID] || string(f.Payload) != f.ClientID {
			t.Fatalf("log holds %q, which was never sent", f.ClientID)
		}
		seen[f.ClientID] = f.Seq
	}
	for id, seq := range persisted {
		if seen[id] != seq {
			t.Fatalf("%s was acknowledged as seq %d, log has %d", id, seq, seen[id])
		}
	}
	if len(seen) != len(sent) {
		t.Fatalf("log has %d messages, %d were sent and all retried to completion", len(seen), len(sent))
	}
	t.Logf("%d rounds, %d messages acknowledged, head %d", rounds, len(persisted), w.HeadSeq)
}

// childSetup makes a dev signing key and keyring in a temporary directory
// and picks a free TCP+UDP port pair for a relayd child.
func childSetup(t *testing.T) (dir, keyring string, signer *token.Signer, addr string) {
	t.Helper()
	dir = t.TempDir()
	kid, priv, err := token.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if signer, err = token.NewSigner(kid, priv); err != nil {
		t.Fatal(err)
	}
	keyring = filepath.Join(dir, "keyring.json")
	if err := token.WriteKeyringFile(keyring, map[string]ed25519.PublicKey{kid: signer.Public()}); err != nil {
		t.Fatal(err)
	}
	tcp, udp, err := relaytest.ListenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = tcp.Addr().String()
	tcp.Close()
	udp.Close()
	return dir, keyring, signer, addr
}

// TestQUICResetAfterRestart: a QUIC client of a relayd that is SIGKILLed
// and restarted on the same address and data learns at its next message
// that its connection is gone (a stateless reset, from the key relayd
// keeps in its data directory), instead of waiting for the idle timeout.
func TestQUICResetAfterRestart(t *testing.T) {
	dir, keyring, signer, addr := childSetup(t)
	rd := startRelayd(t, dir, keyring, addr)
	tok, err := signer.Sign(token.Claims{Tenant: "t1", Subject: "c1", Role: "clinician", Session: "reset",
		Expiry: time.Now().Add(time.Hour).Unix(), IssuedAt: time.Now().Unix(), ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	cl := relaytest.DialAddr(t, addr, rd.tls, "quic")
	cl.Hello(tok, false, 0)
	rd.kill()
	startRelayd(t, dir, keyring, addr)
	// A packet of some size: QUIC answers only packets larger than a
	// reset with one (a bare keepalive PING is too small).
	if err := cl.TrySend(&wire.Frame{Type: wire.TypeSend, ClientID: "m1", Kind: wire.KindChat, Flags: wire.FlagDurable,
		Payload: make([]byte, 200)}); err != nil {
		t.Fatalf("send after the restart: %v", err)
	}
	_, err = cl.Next(30 * time.Second)
	var reset *quic.StatelessResetError
	if !errors.As(err, &reset) {
		t.Fatalf("after the relay restarted: %v, want a stateless reset", err)
	}
}
