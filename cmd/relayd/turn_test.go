package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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
		"--turn-allow-peers", "127.0.0.0/8", "--turn-udp-sockets", "2", "--relay-id", "relay-a", "--region", "lab",
		"--drain-timeout", "60s")
	ops := "http://" + <-rd.ops

	creds := &turn.Credentials{Secrets: [][]byte{[]byte(secret)}}
	user, pass, _, err := creds.Mint("sess-relayd", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	relayConn, release := turnAllocate(t, turnAddr, user, pass)
	defer release()
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
	for _, want := range []string{`stapes_turn_allocations{region="lab",relay="relay-a"} 1`, `stapes_turn_relayed_packets_total{direction="to_peer",region="lab",relay="relay-a"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "sess-relayd") {
		t.Error("/metrics names a session")
	}

	// SIGTERM: new allocations are refused while the live one goes on
	// relaying; relayd exits when it ends, long before --drain-timeout.
	if err := rd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	refused := false
	for i := 0; i < 100 && !refused; i++ {
		conn2, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c2, err := pturn.NewClient(&pturn.ClientConfig{STUNServerAddr: turnAddr, TURNServerAddr: turnAddr, Conn: conn2,
			Username: user, Password: pass, Realm: turn.DefaultRealm})
		if err != nil {
			t.Fatal(err)
		}
		if err := c2.Listen(); err != nil {
			t.Fatal(err)
		}
		if rc2, err := c2.Allocate(); err != nil {
			refused = strings.Contains(err.Error(), "486")
			if !refused {
				t.Fatalf("allocation while draining: %v, want 486", err)
			}
		} else {
			rc2.Close() // before the drain began: let it go
			time.Sleep(20 * time.Millisecond)
		}
		c2.Close()
		conn2.Close()
	}
	if !refused {
		t.Fatal("new allocations still accepted after SIGTERM")
	}
	if _, err := relayConn.WriteTo([]byte("still relaying"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "still relaying" {
		t.Fatalf("draining relay: peer got %q, %v", buf[:n], err)
	}
	select {
	case err := <-rd.exit:
		t.Fatalf("relayd exited (%v) with an allocation live", err)
	default:
	}
	release()
	select {
	case err := <-rd.exit:
		if err != nil {
			t.Fatalf("relayd exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("relayd did not exit once its last allocation ended")
	}
}

// turnAllocate allocates on the TURN server at addr (UDP, loopback) with
// REST credentials; release ends the allocation (a Refresh with lifetime
// 0), then closes the client and its socket; it may be called again.
func turnAllocate(t *testing.T, addr, user, pass string) (relayConn net.PacketConn, release func()) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pturn.NewClient(&pturn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: turn.DefaultRealm})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if relayConn != nil {
				relayConn.Close()
			}
			c.Close()
			conn.Close()
		})
	}
	if err := c.Listen(); err != nil {
		release()
		t.Fatal(err)
	}
	if relayConn, err = c.Allocate(); err != nil {
		release()
		t.Fatalf("allocate on %s: %v", addr, err)
	}
	return relayConn, release
}
