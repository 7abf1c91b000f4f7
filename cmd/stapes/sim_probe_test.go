package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/relaytest"
)

// TestSimChoosesRelay: given a relay map or several --url hosts, the sim
// probes, prints what it measured and why it chose, and connects to the
// chosen relay first; relays that are draining or unhealthy in the map
// are not probed, and one that cannot be reached is listed as such.
func TestSimChoosesRelay(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "wss://" + ln.Addr().String() + "/v1/connect"
	ln.Close()
	relays := []client.MapRelay{
		{ID: "dead-1", Region: "us", Healthy: true, Addresses: map[string]string{"ws": dead}},
		{ID: "live-1", Region: "eu", Healthy: true, Addresses: map[string]string{"ws": r.WSURL, "quic": r.QUICURL}},
		{ID: "draining-1", Region: "eu", Healthy: true, Draining: true, Addresses: map[string]string{"ws": r.WSURL}},
		{ID: "sick-1", Region: "ap", Healthy: false, Addresses: map[string]string{"ws": r.WSURL}},
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(client.RelayMap{Relays: relays})
	}))
	defer hs.Close()

	cases := []struct {
		name     string
		p        probeFlags
		urls     []string
		wantURLs []string
		wantOut  []string
	}{
		{"relay map", probeFlags{relayMap: hs.URL + "/v1/map", transport: "ws", samples: 3}, nil,
			[]string{r.WSURL, r.QUICURL, dead},
			[]string{"probed 2 relays (3 PINGs each", "live-1 (eu)", "dead-1 (us)", "not measured", "chose live-1 — first choice: live-1 (eu)"}},
		{"relay map over quic", probeFlags{relayMap: hs.URL + "/v1/map", transport: "quic", samples: 1}, nil,
			[]string{r.QUICURL, r.WSURL},
			[]string{"probed 1 relays", "chose live-1"}},
		{"url list", probeFlags{samples: 5}, []string{dead, r.WSURL, r.QUICURL},
			[]string{r.WSURL, r.QUICURL, dead},
			[]string{"probed 2 relays", "chose " + strings.TrimPrefix(strings.TrimSuffix(r.WSURL, "/v1/connect"), "wss://")}},
		{"one host: no probing", probeFlags{samples: 5}, []string{r.WSURL, r.QUICURL},
			[]string{r.WSURL, r.QUICURL}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			cfg := client.Config{URLs: tc.urls, TLS: r.ClientTLS()}
			ms, err := tc.p.choose(context.Background(), &cfg, &lineWriter{w: &buf})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.URLs, tc.wantURLs) {
				t.Fatalf("URLs %v, want %v\n%s", cfg.URLs, tc.wantURLs, buf.String())
			}
			if tc.wantOut == nil && (ms != nil || buf.Len() != 0) {
				t.Fatalf("probed with one host: %v\n%s", ms, buf.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(buf.String(), w) {
					t.Fatalf("output lacks %q:\n%s", w, buf.String())
				}
			}
			t.Logf("\n%s", buf.String())
		})
	}

	t.Run("nothing reachable", func(t *testing.T) {
		p := probeFlags{samples: 2}
		cfg := client.Config{URLs: []string{dead, "wss://127.0.0.1:1/v1/connect"}, TLS: r.ClientTLS()}
		var buf bytes.Buffer
		if _, err := p.choose(context.Background(), &cfg, &lineWriter{w: &buf}); err == nil || !strings.Contains(err.Error(), "no relay answered") {
			t.Fatalf("err = %v, want 'no relay answered'", err)
		}
	})
}

func TestSimProbeUsage(t *testing.T) {
	cases := [][]string{
		{"sim", "clinician", "--url", "wss://a/v1/connect", "--relay-map", "http://m/v1/map", "--key", "k", "--session", "s"},
		{"sim", "clinician", "--relay-map", "http://m/v1/map", "--report-rtts", "--key", "k", "--session", "s"},
		{"sim", "patient", "--url", "wss://a/v1/connect", "--report-rtts", "--key", "k", "--session", "s"},
		{"sim", "--report-rtts", "--url", "wss://a/v1/connect", "--key", "k", "--session", "s", "patient"},
		{"sim", "patient", "--url", "wss://a/v1/connect", "extra"},
		{"sim", "patient", "--bogus"},
	}
	for _, args := range cases {
		if code, _, stderr := stapes(t, args...); code != 2 {
			t.Errorf("stapes %q = %d (%s), want 2", args, code, stderr)
		}
	}
}
