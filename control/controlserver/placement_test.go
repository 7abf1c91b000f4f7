package controlserver

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// TestPlace: the choice among eligible relays, without a database.
func TestPlace(t *testing.T) {
	node := func(id, region string, load int) pgstore.Node {
		return pgstore.Node{ID: id, Region: region, Load: load, Capacity: 100}
	}
	nodes := []pgstore.Node{
		node("eu-1", "eu", 50), node("eu-2", "eu", 10), node("us-1", "us", 40), node("us-2", "us", 20), node("ap-1", "ap", 0),
	}
	rtt := func(kv ...any) map[string]float64 {
		m := map[string]float64{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = float64(kv[i+1].(int))
		}
		return m
	}
	// Clinician in eu, patient in us: eu 80/180, us 180/80 (sums 260
	// each); ap 240 from both (480).
	cases := []struct {
		name      string
		clin, pat map[string]float64
		want, by  string
		path      float64
	}{
		{"no RTTs: least load anywhere", nil, nil, "ap-1", placedByLoad, 0},
		{"both sides: smallest sum, least load in its region", rtt("eu-1", 80, "us-1", 180, "ap-1", 240), rtt("eu-1", 180, "us-1", 70, "ap-1", 240), "us-2", placedByPath, 250},
		{"sum beats each side's nearest", rtt("eu-1", 10, "us-1", 90, "ap-1", 60), rtt("eu-1", 150, "us-1", 90, "ap-1", 60), "ap-1", placedByPath, 120},
		{"a relay measured by one side only does not count for the sum", rtt("eu-1", 80, "ap-1", 1), rtt("eu-1", 180, "us-1", 2), "eu-2", placedByPath, 260},
		{"clinician only", rtt("us-2", 90, "eu-1", 20), nil, "eu-2", placedByClinician, 20},
		{"patient only", nil, rtt("ap-1", 30, "eu-2", 70), "ap-1", placedByPatient, 30},
		{"RTTs of relays not eligible are ignored", rtt("gone", 1), rtt("gone", 1), "ap-1", placedByLoad, 0},
		{"sides measured disjoint relays: the clinician's decide", rtt("eu-1", 10), rtt("us-1", 5), "eu-2", placedByClinician, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, view, err := place(append([]pgstore.Node(nil), nodes...), tc.clin, tc.pat)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tc.want || view.By != tc.by || view.Region != got.Region {
				t.Fatalf("placed on %s by %s (region %s), want %s by %s", got.ID, view.By, view.Region, tc.want, tc.by)
			}
			if (view.PathMS == nil) != (tc.by == placedByLoad) || (view.PathMS != nil && *view.PathMS != tc.path) {
				t.Fatalf("path_ms %v, want %v", view.PathMS, tc.path)
			}
		})
	}
	if _, _, err := place(nil, nil, nil); err != ErrNoRelay {
		t.Fatalf("no relays: %v, want ErrNoRelay", err)
	}
}

// TestSessionPlacement: through the API on a real Postgres — the patient's
// app reports its RTTs with its session token, the clinician sends its own
// with the session request, and the session goes to the relay with the
// smallest sum (least-loaded in its region); reports age out; bad reports
// are refused; RTTs are never logged.
func TestSessionPlacement(t *testing.T) {
	var logs lockedBuffer
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Now = clock
		c.RelayLiveness = 1000 * time.Hour // the clock moves by hours below
		c.HeartbeatInterval = time.Hour
	})
	e.clinic("t1")
	tok := e.login("t1")
	e.relayNode("eu-1", "eu", "wss://eu-1.example/v1/connect", 50)
	e.relayNode("eu-2", "eu", "wss://eu-2.example/v1/connect", 10)
	e.relayNode("us-1", "us", "wss://us-1.example/v1/connect", 30)
	e.relayNode("us-2", "us", "wss://us-2.example/v1/connect", 20)
	e.relayNode("ap-1", "ap", "wss://ap-1.example/v1/connect", 0)
	ap9 := e.relayNode("ap-9", "ap", "wss://ap-9.example/v1/connect", 0)
	e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", ap9, map[string]any{"load": 0, "draining": true}, nil)

	create := func(body map[string]any) sessionAnswer {
		t.Helper()
		body["patient_id"] = "p1"
		var s sessionAnswer
		e.must(http.StatusCreated, "POST", "/v1/sessions", tok, body, &s)
		return s
	}
	// Before anyone measured anything: load decides.
	first := create(map[string]any{})
	if first.Relay.ID != "ap-1" || first.Placement == nil || first.Placement.By != placedByLoad {
		t.Fatalf("without RTTs: %s by %+v, want ap-1 by load", first.Relay.ID, first.Placement)
	}

	// The patient's app (in us) reports with its session token.
	var rep struct {
		Relays    int       `json:"relays"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	patient := map[string]any{"eu-1": 181.25, "eu-2": 182.375, "us-1": 1.5, "us-2": 2, "ap-1": 240.625, "ap-9": 1}
	e.must(http.StatusOK, "PUT", "/v1/placement/rtts", first.PatientToken, map[string]any{"rtts": patient}, &rep)
	if rep.Relays != 6 || !rep.ExpiresAt.Equal(now.Add(24*time.Hour).UTC().Truncate(time.Nanosecond)) && rep.ExpiresAt.Sub(now.Add(24*time.Hour)).Abs() > time.Second {
		t.Fatalf("report answer %+v", rep)
	}
	if n := e.count("relay_rtts WHERE tenant_id = 't1' AND subject_role = 'patient' AND subject_id = 'p1'"); n != 6 {
		t.Fatalf("%d patient rows stored, want 6", n)
	}

	// Clinician in eu: eu 80+181, us 180+2 → us; us-2 is the less loaded.
	s := create(map[string]any{"rtts": map[string]any{"eu-1": 80, "eu-2": 81, "us-1": 180, "us-2": 181, "ap-1": 240, "ap-9": 0.5}})
	if s.Relay.ID != "us-2" || s.Placement.By != placedByPath || s.Placement.Region != "us" || *s.Placement.PathMS != 181.5 {
		t.Fatalf("placed on %s by %+v path %v, want us-2 by path, region us, 181.5 ms", s.Relay.ID, s.Placement, *s.Placement.PathMS)
	}
	// The clinician's report is kept: a request without rtts uses it.
	if s := create(map[string]any{}); s.Relay.ID != "us-2" || s.Placement.By != placedByPath {
		t.Fatalf("with the stored clinician report: %s by %s, want us-2 by path", s.Relay.ID, s.Placement.By)
	}
	// A clinician far from both makes ap the shortest path.
	if s := create(map[string]any{"rtts": map[string]any{"eu-1": 400, "us-1": 400, "ap-1": 5}}); s.Relay.ID != "ap-1" || *s.Placement.PathMS != 245.625 {
		t.Fatalf("clinician near ap: %s path %v, want ap-1 245.625", s.Relay.ID, *s.Placement.PathMS)
	}
	// A region asked for restricts the choice.
	if s := create(map[string]any{"region": "eu"}); s.Relay.ID != "eu-2" || s.Placement.Region != "eu" {
		t.Fatalf("region eu asked: %s, want eu-2", s.Relay.ID)
	}

	// A day later both reports have aged out: load decides again.
	mu.Lock()
	now = now.Add(25 * time.Hour)
	mu.Unlock()
	tok = e.login("t1") // the API token expired too
	if s := create(map[string]any{}); s.Placement.By != placedByLoad {
		t.Fatalf("after 25 h: placed by %s, want load", s.Placement.By)
	}
	// Only the patient reported recently: the patient's RTTs decide.
	p2 := create(map[string]any{})
	e.must(http.StatusOK, "PUT", "/v1/placement/rtts", p2.PatientToken, map[string]any{"rtts": map[string]any{"eu-1": 30, "us-1": 90}}, nil)
	if s := create(map[string]any{}); s.Relay.ID != "eu-2" || s.Placement.By != placedByPatient {
		t.Fatalf("patient report only: %s by %s, want eu-2 by patient", s.Relay.ID, s.Placement.By)
	}

	// Refusals.
	bad := []struct {
		name   string
		bearer string
		method string
		path   string
		body   any
		code   int
	}{
		{"negative RTT", tok, "POST", "/v1/sessions", map[string]any{"patient_id": "p1", "rtts": map[string]any{"eu-1": -1}}, 400},
		{"RTT above a minute", tok, "POST", "/v1/sessions", map[string]any{"patient_id": "p1", "rtts": map[string]any{"eu-1": 60001}}, 400},
		{"RTT not a number", tok, "POST", "/v1/sessions", map[string]any{"patient_id": "p1", "rtts": map[string]any{"eu-1": "fast"}}, 400},
		{"relay id too long", tok, "POST", "/v1/sessions", map[string]any{"patient_id": "p1", "rtts": map[string]any{strings.Repeat("r", 129): 1}}, 400},
		{"patient report without rtts", p2.PatientToken, "PUT", "/v1/placement/rtts", map[string]any{}, 400},
		{"patient report, bad value", p2.PatientToken, "PUT", "/v1/placement/rtts", map[string]any{"rtts": map[string]any{"eu-1": -5}}, 400},
		{"no token", "", "PUT", "/v1/placement/rtts", map[string]any{"rtts": map[string]any{}}, 401},
		{"clinician API token", tok, "PUT", "/v1/placement/rtts", map[string]any{"rtts": map[string]any{}}, 401},
		{"clinician session token", p2.ClinicianToken, "PUT", "/v1/placement/rtts", map[string]any{"rtts": map[string]any{}}, 403},
	}
	for _, b := range bad {
		if code, body := e.call(b.method, b.path, b.bearer, b.body); code != b.code {
			t.Errorf("%s: %d %s, want %d", b.name, code, body, b.code)
		}
	}
	// A token of a session that is over reports nothing.
	e.must(http.StatusOK, "POST", "/v1/sessions/"+p2.SessionID+"/end", tok, nil, nil)
	e.must(http.StatusUnauthorized, "PUT", "/v1/placement/rtts", p2.PatientToken, map[string]any{"rtts": map[string]any{"eu-1": 1}}, nil)

	out := logs.String()
	if !strings.Contains(out, "patient RTTs stored") || !strings.Contains(out, `"placed_by":"path"`) {
		t.Fatalf("the log lacks the placement lines:\n%s", out)
	}
	for _, v := range []string{"181.25", "181.5", "182.375", "240.625", "245.625"} {
		if strings.Contains(out, v) {
			t.Errorf("the log contains an RTT value %q", v)
		}
	}
}
