package controlserver

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/turn"
)

var (
	turnNew = []byte("turn-secret-new-0123456789abcdef")
	turnOld = []byte("turn-secret-old-0123456789abcdef")
)

// TestSessionICEServers: with TURN secrets configured, a session answer
// carries the TURN URLs the session's relay published (UDP, TCP, TLS)
// with a REST credential for that session, minted with the newest
// secret, expiring with the session tokens; a relay verifying with the
// rotated pair accepts it, another session's name does not. Without a
// published TURN address, or without secrets, there are no ice_servers.
func TestSessionICEServers(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TURNSecrets = [][]byte{turnNew, turnOld}; c.SessionTokenTTL = 30 * time.Minute })
	e.clinic("t1")
	cred := e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 3)
	e.must(http.StatusOK, "POST", "/v1/relay/register", cred, map[string]any{"addresses": map[string]string{
		"ws": "wss://r1.example/v1/connect", "turn": "r1.example:3478", "turns": "r1.example:5349"}, "version": "test"}, nil)
	tok := e.login("t1")
	var s sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1"}, &s)
	if len(s.ICEServers) != 1 {
		t.Fatalf("ice_servers = %+v, want one", s.ICEServers)
	}
	ice := s.ICEServers[0]
	wantURLs := []string{"turn:r1.example:3478?transport=udp", "turn:r1.example:3478?transport=tcp", "turns:r1.example:5349?transport=tcp"}
	if !slices.Equal(ice.URLs, wantURLs) {
		t.Errorf("urls = %v, want %v", ice.URLs, wantURLs)
	}
	exp, session, ok := strings.Cut(ice.Username, ":")
	if !ok || session != s.SessionID || exp != strconv.FormatInt(s.ExpiresAt.Unix(), 10) || !ice.ExpiresAt.Equal(s.ExpiresAt) {
		t.Errorf("username %q, expires %v; want <%d>:%s expiring with the tokens (%v)", ice.Username, ice.ExpiresAt, s.ExpiresAt.Unix(), s.SessionID, s.ExpiresAt)
	}
	if ttl := time.Until(ice.ExpiresAt); ttl > 30*time.Minute || ttl < 25*time.Minute {
		t.Errorf("credential lifetime %v, want the session token's 30m", ttl)
	}
	notEnded := func(string) bool { return false }
	cases := []struct {
		name    string
		secrets [][]byte
		user    string
		wantErr error
	}{
		{"relay with the rotated pair", [][]byte{turnNew, turnOld}, ice.Username, nil},
		{"relay that has only the new secret", [][]byte{turnNew}, ice.Username, nil},
		{"relay that has only the old secret", [][]byte{turnOld}, ice.Username, turn.ErrBadPassword},
		{"another session's name", [][]byte{turnNew, turnOld}, exp + ":ses-other", turn.ErrBadPassword},
	}
	for _, tc := range cases {
		got, err := (&turn.Credentials{Secrets: tc.secrets, Ended: notEnded}).CheckPassword(tc.user, ice.Credential)
		if (tc.wantErr == nil && (err != nil || got != s.SessionID)) || (tc.wantErr != nil && !strings.Contains(errString(err), tc.wantErr.Error())) {
			t.Errorf("%s: session %q, err %v; want err %v", tc.name, got, err, tc.wantErr)
		}
	}

	// A relay without TURN: no ice_servers.
	e.relayNode("r2", "us", "wss://r2.example/v1/connect", 0)
	var s2 sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1", "region": "us"}, &s2)
	if s2.Relay.ID != "r2" || s2.ICEServers != nil {
		t.Errorf("relay %s without TURN: ice_servers %+v, want none", s2.Relay.ID, s2.ICEServers)
	}

	// Malformed TURN addresses are refused.
	for _, bad := range []string{"r1.example", "turn:r1.example:3478", ":3478", "r1.example:0", "r1.example:99999"} {
		code, body := e.call("POST", "/v1/relay/register", cred, map[string]any{"addresses": map[string]string{"ws": "wss://r1.example/v1/connect", "turn": bad}})
		if code != http.StatusBadRequest {
			t.Errorf("turn address %q: %d %s, want 400", bad, code, body)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestSessionWithoutTURNSecrets: no secrets, no ice_servers, even for a
// relay that publishes TURN; weak secrets are a config error.
func TestSessionWithoutTURNSecrets(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	cred := e.relayNode("r1", "eu", "", 0)
	e.must(http.StatusOK, "POST", "/v1/relay/register", cred, map[string]any{"addresses": map[string]string{
		"ws": "wss://r1.example/v1/connect", "turn": "r1.example:3478"}}, nil)
	e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 0, "draining": false}, nil)
	var s sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", e.login("t1"), map[string]any{"patient_id": "p1"}, &s)
	if s.ICEServers != nil {
		t.Fatalf("ice_servers %+v without TURN secrets", s.ICEServers)
	}
	if _, err := New(Config{Store: e.st, Secret: testSecret, TURNSecrets: [][]byte{[]byte("short")}}); err == nil {
		t.Fatal("a weak TURN secret was accepted")
	}
}
