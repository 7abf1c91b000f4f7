package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pturn "github.com/pion/turn/v5"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/turn"
)

// TestTURNInRelayd: relayd with --turn-listen serves TURN with REST
// credentials from --turn-secret-file; a pion/turn client allocates and
// relays to a lab peer, and /metrics shows the allocation labelled by
// relay only.
func TestTURNInRelayd(t *testing.T) {
	dir, keyring, _, addr := childSetup(t)
	secret := "relayd-turn-secret-0123456789"
	secretFile := filepath.Join(dir, "turn-secrets")
	if err := os.WriteFile(secretFile, []byte("# newest first\n"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tcp, udp, err := relaytest.ListenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	turnAddr := tcp.Addr().String()
	tcp.Close()
	udp.Close()
	rd := startRelayd(t, dir, keyring, addr, "--turn-listen", turnAddr, "--turn-secret-file", secretFile,
		"--turn-allow-peers", "127.0.0.0/8", "--turn-udp-sockets", "2", "--relay-id", "relay-a")
	ops := "http://" + <-rd.ops

	creds := &turn.Credentials{Secrets: [][]byte{[]byte(secret)}}
	user, pass, _, err := creds.Mint("sess-relayd", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := pturn.NewClient(&pturn.ClientConfig{STUNServerAddr: turnAddr, TURNServerAddr: turnAddr, Conn: conn,
		Username: user, Password: pass, Realm: turn.DefaultRealm})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate through relayd: %v", err)
	}
	defer relayConn.Close()
	peer, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := relayConn.WriteTo([]byte("through relayd"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "through relayd" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	_, metrics := get(t, ops+"/metrics")
	for _, want := range []string{`stapes_turn_allocations{relay="relay-a"} 1`, `stapes_turn_relayed_packets_total{direction="to_peer",relay="relay-a"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "sess-relayd") {
		t.Error("/metrics names a session")
	}
}
