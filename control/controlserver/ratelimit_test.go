package controlserver

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newLimiter(6) // 6 at once, then one every 10 s
	for i := range 6 {
		if ok, _ := l.take("k", t0); !ok {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
	}
	tests := []struct {
		name     string
		key      string
		at       time.Duration
		want     bool
		wantWait time.Duration
	}{
		{"burst spent", "k", 0, false, 10 * time.Second},
		{"another key", "other", 0, true, 0},
		{"4 s later: not yet", "k", 4 * time.Second, false, 6 * time.Second},
		{"10 s later: one back", "k", 10 * time.Second, true, 0},
		{"and spent again", "k", 10 * time.Second, false, 10 * time.Second},
		{"a minute later: no more than the burst", "k", 80 * time.Second, true, 0},
	}
	for _, tt := range tests {
		ok, wait := l.take(tt.key, t0.Add(tt.at))
		if ok != tt.want || (wait-tt.wantWait).Abs() > time.Millisecond {
			t.Errorf("%s: take = %v, %v; want %v, %v", tt.name, ok, wait, tt.want, tt.wantWait)
		}
	}
	if ok, _ := newLimiter(-1).take("k", t0); !ok {
		t.Error("a negative limit (unlimited) refused")
	}
	if ok, wait := newLimiter(0).take("k", t0); ok || wait <= 0 {
		t.Errorf("limit 0: take = %v, %v; want refused", ok, wait)
	}

	// A flood of keys: buckets that refilled are forgotten, the map stays
	// bounded.
	big := newLimiter(60)
	for i := range maxLimiterKeys + 10 {
		big.take(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Microsecond))
	}
	big.take("late", t0.Add(2*time.Minute))
	if n := len(big.buckets); n > maxLimiterKeys {
		t.Errorf("%d buckets kept, want at most %d", n, maxLimiterKeys)
	}
}

// TestLoginRateLimit: per address and per login name, 429 with
// Retry-After and a JSON error saying what to do, counted in a metric,
// and no e-mail address in any log line.
func TestLoginRateLimit(t *testing.T) {
	var logs lockedBuffer
	clk := newClock()
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) {
		c.LoginPerIP, c.LoginPerName, c.Now, c.Registerer = 5, 3, clk.Now, reg
		c.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	e.clinic("t1")
	login := func(ip, email, pw string) (int, http.Header, apiError) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.hs.URL+"/v1/login", strings.NewReader(fmt.Sprintf(`{"email": %q, "password": %q}`, email, pw)))
		req.Header.Set("X-Test-Client", ip)
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ae apiError
		_ = json.NewDecoder(resp.Body).Decode(&ae)
		return resp.StatusCode, resp.Header, ae
	}
	for i := range 3 {
		if code, _, _ := login("10.0.0.1", "doc@t1.example", "wrong password"); code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, code)
		}
	}
	// The name is spent, from any address, even with the right password.
	code, h, ae := login("10.0.0.2", "DOC@t1.example ", testPassword)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") != "20" || ae.Code != "rate_limited" ||
		!strings.Contains(ae.Message, "wait 20 seconds") || strings.Contains(ae.Message, "doc@") {
		t.Fatalf("4th attempt for the name: %d Retry-After %q %+v; want 429, 20 s, rate_limited", code, h.Get("Retry-After"), ae)
	}
	// Another name from the first address until the address is spent
	// (5 a minute: 3 used, the name-limited one did not count there).
	for _, name := range []string{"a@t1.example", "b@t1.example"} {
		if code, _, _ := login("10.0.0.1", name, "whatever password"); code != http.StatusUnauthorized {
			t.Fatalf("%s from 10.0.0.1: %d, want 401", name, code)
		}
	}
	code, h, ae = login("10.0.0.1", "c@t1.example", "whatever password")
	if code != http.StatusTooManyRequests || h.Get("Retry-After") != "12" || !strings.Contains(ae.Message, "from your address") {
		t.Fatalf("6th attempt from the address: %d Retry-After %q %+v; want 429 after 12 s", code, h.Get("Retry-After"), ae)
	}
	clk.Add(20 * time.Second)
	if code, _, ae := login("10.0.0.1", "doc@t1.example", testPassword); code != http.StatusOK {
		t.Fatalf("after Retry-After: %d %+v, want 200", code, ae)
	}
	for by, want := range map[string]float64{"name": 1, "ip": 1} {
		if got := counter(t, e.srv.m.throttled.WithLabelValues("login", by)); got != want {
			t.Errorf("rate_limited_total{endpoint=login,by=%s} = %v, want %v", by, got, want)
		}
	}
	for _, secret := range []string{"doc@t1.example", "DOC@", "a@t1.example", "c@t1.example"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

// counter reads a counter's value.
func counter(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
