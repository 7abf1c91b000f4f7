package controlserver

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPublicMap: GET /v1/map without a credential serves the shared
// relays and the deployment-wide flags and nothing secret; it is
// cacheable (ETag, Cache-Control, 304), rebuilt once per max-age, and
// rate limited per address.
func TestPublicMap(t *testing.T) {
	clk := newClock()
	e := newEnv(t, func(c *Config) { c.Now, c.MapPerIP = clk.Now, 6 })
	e.clinic("t1")
	cred := e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 3)
	// r1 also publishes its gossip address, for other relays' joins.
	e.must(http.StatusOK, "POST", "/v1/relay/register", cred, map[string]any{"addresses": map[string]string{
		"ws": "wss://r1.example/v1/connect", "gossip": "10.9.8.7:7946"}}, nil)
	var internal relayMapAnswer
	e.must(http.StatusOK, "GET", "/v1/relay/map", cred, nil, &internal)
	if len(internal.Relays) == 0 || internal.Relays[0].Addresses["gossip"] != "10.9.8.7:7946" {
		t.Fatalf("relays' own map = %+v, want r1's gossip address", internal.Relays)
	}
	e.relayNode("r2", "us", "", 0) // created, never registered
	var ded struct {
		Credential string `json:"credential"`
	}
	e.must(http.StatusCreated, "POST", "/v1/operator/relays", testOperator, map[string]any{"id": "r-dedicated", "region": "eu", "tenant_id": "t1"}, &ded)
	e.must(http.StatusOK, "POST", "/v1/relay/register", ded.Credential, map[string]any{"addresses": map[string]string{"ws": "wss://dedicated.example"}, "version": "v-secret"}, nil)
	e.must(http.StatusOK, "PUT", "/v1/operator/tenants/_system/flags/new-codec", testOperator, map[string]any{"enabled": true, "value": 2}, nil)
	e.must(http.StatusOK, "PUT", "/v1/operator/tenants/t1/flags/t1-only", testOperator, map[string]any{"enabled": true}, nil)

	get := func(etag string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.hs.URL+"/v1/map", nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	code, h, body := get("")
	if code != http.StatusOK || h.Get("Cache-Control") != "public, max-age=10" || !strings.HasPrefix(h.Get("ETag"), `W/"`) {
		t.Fatalf("GET /v1/map = %d, Cache-Control %q, ETag %q", code, h.Get("Cache-Control"), h.Get("ETag"))
	}
	var m publicMapAnswer
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("map %s: %v", body, err)
	}
	if len(m.Relays) != 2 || m.Relays[0].ID != "r1" || !m.Relays[0].Healthy || m.Relays[0].Load != 3 ||
		m.Relays[0].Addresses["ws"] != "wss://r1.example/v1/connect" || m.Relays[1].ID != "r2" || m.Relays[1].Healthy {
		t.Fatalf("relays = %+v, want r1 healthy (load 3) and r2 not", m.Relays)
	}
	if len(m.Regions) != 2 || m.Regions[0] != (mapRegion{Name: "eu", Relays: 1, Healthy: 1}) || m.MaxAge != 10 {
		t.Fatalf("regions = %+v (max age %d)", m.Regions, m.MaxAge)
	}
	if f, ok := m.Flags["new-codec"]; !ok || !f.Enabled || string(f.Value) != "2" || len(m.Flags) != 1 {
		t.Fatalf("flags = %+v, want the deployment-wide new-codec only", m.Flags)
	}
	for _, secret := range []string{"10.9.8.7", "gossip", "r-dedicated", "dedicated.example", "t1", "v-secret", "credential", cred, "last_heartbeat", "tenant"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("the public map contains %q:\n%s", secret, body)
		}
	}

	etag := h.Get("ETag")
	if code, h2, b := get(etag); code != http.StatusNotModified || len(b) != 0 || h2.Get("ETag") != etag {
		t.Fatalf("If-None-Match with the ETag: %d (%d bytes, ETag %q), want 304", code, len(b), h2.Get("ETag"))
	}
	// A change is served once the map's max-age passed, not before.
	e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 7, "draining": false}, nil)
	if code, _, _ := get(etag); code != http.StatusNotModified {
		t.Fatalf("within max-age: %d, want 304 (the built map is reused)", code)
	}
	clk.Add(11 * time.Second)
	code, h, body = get(etag)
	if code != http.StatusOK || h.Get("ETag") == etag || !strings.Contains(string(body), `"load":7`) {
		t.Fatalf("after max-age with a changed load: %d ETag %q %s", code, h.Get("ETag"), body)
	}
	// 6 a minute per address: 4 used, 1.1 back over the 11 s: 3 more.
	for range 3 {
		if code, _, _ := get(""); code != http.StatusOK {
			t.Fatalf("within the limit: %d", code)
		}
	}
	code, h, body = get("")
	var ae apiError
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || json.Unmarshal(body, &ae) != nil || ae.Code != "rate_limited" {
		t.Fatalf("8th request in a minute: %d Retry-After %q %s, want 429", code, h.Get("Retry-After"), body)
	}
	if got := counter(t, e.srv.m.throttled.WithLabelValues("map", "ip")); got != 1 {
		t.Errorf("rate_limited_total{endpoint=map,by=ip} = %v, want 1", got)
	}
}

func TestETagMatch(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"", false},
		{`W/"abc"`, true},
		{`"abc"`, true},
		{`"x", W/"abc"`, true},
		{`*`, true},
		{`"abcd"`, false},
	}
	for _, tt := range tests {
		if got := etagMatch(tt.header, `W/"abc"`); got != tt.want {
			t.Errorf("etagMatch(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}
