package controlserver

import (
	"encoding/json"
	"net/http"
	"testing"
)

func TestRelayPlacementAndMap(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	tok := e.login("t1")
	session := func(body map[string]any) (int, sessionAnswer) {
		t.Helper()
		code, b := e.call("POST", "/v1/sessions", tok, body)
		var s sessionAnswer
		if code == http.StatusCreated {
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
		}
		return code, s
	}
	if code, _ := session(map[string]any{"patient_id": "p1"}); code != http.StatusServiceUnavailable {
		t.Fatalf("no relay at all: status %d, want 503", code)
	}
	e.relayNode("never-heartbeat", "eu", "", 0)
	busy := e.relayNode("eu-busy", "eu", "wss://eu-busy.example/v1/connect", 80)
	e.relayNode("eu-idle", "eu", "wss://eu-idle.example/v1/connect", 10)
	us := e.relayNode("us-1", "us", "wss://us-1.example/v1/connect", 50)

	tests := []struct {
		name      string
		body      map[string]any
		wantRelay string
	}{
		{"least loaded", map[string]any{"patient_id": "p1"}, "eu-idle"},
		{"region preferred", map[string]any{"patient_id": "p1", "region": "us"}, "us-1"},
		{"unknown region: least loaded anywhere", map[string]any{"patient_id": "p1", "region": "ap"}, "eu-idle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, s := session(tt.body)
			if code != http.StatusCreated || s.Relay.ID != tt.wantRelay {
				t.Fatalf("status %d relay %q, want 201 %q", code, s.Relay.ID, tt.wantRelay)
			}
		})
	}
	t.Run("draining relay is not chosen", func(t *testing.T) {
		e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", us, map[string]any{"load": 0, "draining": true}, nil)
		if code, s := session(map[string]any{"patient_id": "p1", "region": "us"}); code != http.StatusCreated || s.Relay.ID != "eu-idle" {
			t.Fatalf("status %d relay %q, want eu-idle", code, s.Relay.ID)
		}
	})
	t.Run("map", func(t *testing.T) {
		var m relayMapAnswer
		e.must(http.StatusOK, "PUT", "/v1/operator/tenants/_system/flags/quic", testOperator, map[string]any{"enabled": true, "value": map[string]int{"pct": 50}}, nil)
		e.must(http.StatusNotFound, "PUT", "/v1/operator/tenants/nope/flags/quic", testOperator, map[string]any{"enabled": true}, nil)
		e.must(http.StatusOK, "GET", "/v1/relay/map", busy, nil, &m)
		if len(m.Relays) != 4 || len(m.Regions) != 2 || m.Regions[0] != (mapRegion{Name: "eu", Relays: 3, Healthy: 2}) ||
			m.Regions[1] != (mapRegion{Name: "us", Relays: 1, Healthy: 0}) {
			t.Fatalf("map regions %+v, %d relays", m.Regions, len(m.Relays))
		}
		for _, r := range m.Relays {
			wantHealthy := r.ID != "never-heartbeat"
			if r.Healthy != wantHealthy {
				t.Errorf("relay %s healthy = %v, want %v", r.ID, r.Healthy, wantHealthy)
			}
		}
		if f := m.Flags["quic"]; !f.Enabled || string(f.Value) != `{"pct":50}` {
			t.Fatalf("flags = %+v", m.Flags)
		}
	})
	t.Run("bad heartbeat", func(t *testing.T) {
		e.must(http.StatusBadRequest, "POST", "/v1/relay/heartbeat", busy, map[string]any{"load": -1, "draining": false}, nil)
		e.must(http.StatusBadRequest, "POST", "/v1/relay/register", busy, map[string]any{"addresses": map[string]string{"ws": "http://x"}}, nil)
	})
}
