package controlserver

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

func TestJobAPI(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name     string
		tenant   string
		body     any
		want     int
		wantCode string
	}{
		{"expire sessions", "t1", map[string]any{"id": "j1", "kind": "expire_sessions", "payload": map[string]any{"max_age": "2h"}, "run_at": later}, 201, ""},
		{"default payload and id", "t1", map[string]any{"kind": "expire_sessions", "run_at": later}, 201, ""},
		{"partitions, deployment-wide", "_system", map[string]any{"id": "parts", "kind": "telemetry_partitions", "payload": map[string]any{"months_ahead": 2}, "run_at": later}, 201, ""},
		{"same id", "t1", map[string]any{"id": "j1", "kind": "expire_sessions"}, 409, "exists"},
		{"no kind", "t1", map[string]any{"id": "j2"}, 400, "bad_request"},
		{"unknown kind", "t1", map[string]any{"kind": "mine-bitcoin"}, 400, "bad_request"},
		{"partitions in a tenant", "t1", map[string]any{"kind": "telemetry_partitions"}, 400, "bad_request"},
		{"max_age too short", "t1", map[string]any{"kind": "expire_sessions", "payload": map[string]any{"max_age": "1s"}}, 400, "bad_request"},
		{"payload field unknown", "t1", map[string]any{"kind": "expire_sessions", "payload": map[string]any{"maxage": "2h"}}, 400, "bad_request"},
		{"payload not an object", "t1", map[string]any{"kind": "expire_sessions", "payload": []int{1}}, 400, "bad_request"},
		{"months out of range", "_system", map[string]any{"kind": "telemetry_partitions", "payload": map[string]any{"months_ahead": 99}}, 400, "bad_request"},
		{"unknown tenant", "t9", map[string]any{"kind": "expire_sessions"}, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.call("POST", "/v1/operator/tenants/"+tt.tenant+"/jobs", testOperator, tt.body)
			if code != tt.want {
				t.Fatalf("%d %s, want %d", code, body, tt.want)
			}
			if tt.wantCode != "" {
				var ae apiError
				if json.Unmarshal(body, &ae) != nil || ae.Code != tt.wantCode {
					t.Fatalf("body %s, want code %s", body, tt.wantCode)
				}
			}
		})
	}
	var list struct {
		Jobs []jobView `json:"jobs"`
	}
	e.must(http.StatusOK, "GET", "/v1/operator/tenants/t1/jobs", testOperator, nil, &list)
	if len(list.Jobs) != 2 || list.Jobs[1].ID != "j1" || list.Jobs[1].State != "pending" || string(list.Jobs[1].Payload) != `{"max_age":"2h"}` ||
		!strings.HasPrefix(list.Jobs[0].ID, "job-") {
		t.Fatalf("jobs = %+v", list.Jobs)
	}
	e.must(http.StatusBadRequest, "GET", "/v1/operator/tenants/t1/jobs?state=sleeping", testOperator, nil, nil)
	e.must(http.StatusBadRequest, "GET", "/v1/operator/tenants/t1/jobs?limit=0", testOperator, nil, nil)
	e.must(http.StatusNotFound, "GET", "/v1/operator/tenants/t9/jobs", testOperator, nil, nil)
	e.must(http.StatusUnauthorized, "GET", "/v1/operator/tenants/t1/jobs", e.login("t1"), nil, nil)

	var c jobView
	e.must(http.StatusOK, "POST", "/v1/operator/tenants/t1/jobs/j1/cancel", testOperator, nil, &c)
	if c.State != "cancelled" {
		t.Fatalf("cancel = %+v", c)
	}
	e.must(http.StatusOK, "POST", "/v1/operator/tenants/t1/jobs/j1/cancel", testOperator, nil, nil)
	e.must(http.StatusNotFound, "POST", "/v1/operator/tenants/t1/jobs/nope/cancel", testOperator, nil, nil)
	e.must(http.StatusOK, "GET", "/v1/operator/tenants/t1/jobs?state=cancelled&limit=5", testOperator, nil, &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != "j1" {
		t.Fatalf("cancelled jobs = %+v", list.Jobs)
	}
	// A job another controld runs cannot be cancelled.
	if _, err := e.st.ClaimJobs(ctxT(t), "elsewhere", time.Minute, 10); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusCreated, "POST", "/v1/operator/tenants/_system/jobs", testOperator, map[string]any{"id": "now", "kind": "expire_sessions"}, nil)
	if _, err := e.st.ClaimJobs(ctxT(t), "elsewhere", time.Minute, 10); err != nil {
		t.Fatal(err)
	}
	code, body := e.call("POST", "/v1/operator/tenants/_system/jobs/now/cancel", testOperator, nil)
	var ae apiError
	if code != http.StatusConflict || json.Unmarshal(body, &ae) != nil || ae.Code != "job_not_pending" || !strings.Contains(ae.Message, "running") {
		t.Fatalf("cancelling a running job: %d %s, want 409 job_not_pending", code, body)
	}
}

// TestJobRunner: RunJobs runs due jobs — expire_sessions expires old
// sessions, which the relay heartbeat then reports ended — retries a
// failing one with backoff and marks a job of an unknown kind failed.
func TestJobRunner(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.JobPollInterval, c.JobMaxAttempts = 20*time.Millisecond, 2 })
	e.clinic("t1")
	cred := e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 0)
	doc := e.login("t1")
	old, fresh := e.session(doc, "t1"), e.session(doc, "t1")
	if _, err := e.st.Pool().Exec(ctxT(t), "UPDATE fitting_sessions SET created_at = now() - interval '3 hours' WHERE session_id = $1", old.SessionID); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusCreated, "POST", "/v1/operator/tenants/t1/jobs", testOperator, map[string]any{"id": "expire", "kind": "expire_sessions", "payload": map[string]any{"max_age": "2h"}}, nil)
	e.must(http.StatusCreated, "POST", "/v1/operator/tenants/_system/jobs", testOperator, map[string]any{"id": "parts", "kind": "telemetry_partitions"}, nil)
	// Jobs the API would refuse, as another controld version might leave.
	ctx := ctxT(t)
	for _, j := range []pgstore.Job{
		{TenantID: "t1", ID: "alien", Kind: "alien-kind", RunAt: time.Now()},
		{TenantID: "t1", ID: "bad-payload", Kind: "expire_sessions", Payload: []byte(`{"max_age": "soon"}`), RunAt: time.Now()},
	} {
		if _, err := e.st.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}

	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.RunJobs(rctx) }()
	defer func() {
		stop()
		<-done
	}()
	state := func(tenant, id string) pgstore.Job {
		j, err := e.st.Job(ctx, tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if state("t1", "expire").State == pgstore.JobDone && state("_system", "parts").State == pgstore.JobDone &&
			state("t1", "alien").State == pgstore.JobFailed && state("t1", "bad-payload").Attempts >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not run: %+v %+v %+v %+v", state("t1", "expire"), state("_system", "parts"), state("t1", "alien"), state("t1", "bad-payload"))
		}
		time.Sleep(20 * time.Millisecond) // polling the runner through Postgres
	}
	if j := state("t1", "alien"); !strings.Contains(j.LastError, "does not know job kind") || j.Attempts != 1 {
		t.Errorf("unknown kind: %+v, want failed after one attempt", j)
	}
	if j := state("t1", "bad-payload"); j.Attempts == 1 && (j.State != pgstore.JobPending || !j.RunAt.After(time.Now().Add(-time.Second)) || !strings.Contains(j.LastError, "max_age")) {
		t.Errorf("failed attempt 1 of 2: %+v, want pending again later with the reason", j)
	}
	var hb heartbeatAnswer
	e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 0, "draining": false,
		"sessions": []string{old.SessionID, fresh.SessionID}}, &hb)
	if !slices.Equal(hb.Ended, []string{old.SessionID}) {
		t.Fatalf("ended after expire_sessions = %v, want the old session only", hb.Ended)
	}
	if x, _ := e.st.Session(ctx, "t1", old.SessionID); x.State != pgstore.StateExpired {
		t.Fatalf("old session %s, want expired", x.State)
	}
	e.must(http.StatusConflict, "POST", "/v1/sessions/"+old.SessionID+"/tokens", doc, nil, nil)
	if got := counter(t, e.srv.m.jobs.WithLabelValues("expire_sessions", "done")); got != 1 {
		t.Errorf("jobs_total{expire_sessions,done} = %v, want 1", got)
	}
	if got := counter(t, e.srv.m.jobs.WithLabelValues("unknown", "failed")); got != 1 {
		t.Errorf("jobs_total{unknown,failed} = %v, want 1", got)
	}
}
