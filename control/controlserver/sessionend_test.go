package controlserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control"
)

// session creates a session of p1 (device <tid>-SN1) for tok's clinician.
func (e *env) session(tok, tid string) sessionAnswer {
	e.t.Helper()
	var s sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1", "device_serial": tid + "-SN1"}, &s)
	return s
}

// loginAs logs a clinician of tid in by e-mail.
func (e *env) loginAs(email string) string {
	e.t.Helper()
	var a loginAnswer
	e.must(http.StatusOK, "POST", "/v1/login", "", map[string]any{"email": email, "password": testPassword}, &a)
	return a.Token
}

// TestEndSession: who may end a session, idempotence, no new token for
// an ended session, and relays learning it (heartbeat, session state,
// control.Directory).
func TestEndSession(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	e.clinic("t2")
	cred := e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 0)
	e.op("/v1/operator/tenants/t1/clinicians", map[string]any{"id": "c2", "email": "other@t1.example", "password": testPassword})
	e.op("/v1/operator/tenants/t1/clinicians", map[string]any{"id": "adm", "email": "adm@t1.example", "password": testPassword, "role": "admin"})
	doc, other, adm, t2doc := e.login("t1"), e.loginAs("other@t1.example"), e.loginAs("adm@t1.example"), e.login("t2")
	s1, s2, s3, running := e.session(doc, "t1"), e.session(doc, "t1"), e.session(doc, "t1"), e.session(doc, "t1")

	endPath := func(id string) string { return "/v1/sessions/" + id + "/end" }
	tests := []struct {
		name     string
		bearer   string
		id       string
		want     int
		wantCode string
	}{
		{"no token", "", s1.SessionID, 401, "unauthorized"},
		{"operator token on the clinician route", testOperator, s1.SessionID, 401, "unauthorized"},
		{"clinician of another tenant", t2doc, s1.SessionID, 404, "not_found"},
		{"clinician without the patient in care", other, s1.SessionID, 403, "not_in_care"},
		{"unknown session", doc, "ses-unknown", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.call("POST", endPath(tt.id), tt.bearer, nil)
			var ae apiError
			if code != tt.want || json.Unmarshal(body, &ae) != nil || ae.Code != tt.wantCode {
				t.Fatalf("status %d %s, want %d %s", code, body, tt.want, tt.wantCode)
			}
		})
	}

	var first, again sessionStateView
	e.must(http.StatusOK, "POST", endPath(s1.SessionID), doc, nil, &first)
	if first.State != "ended" || first.EndedAt == nil || first.SessionID != s1.SessionID || first.TenantID != "t1" {
		t.Fatalf("end = %+v", first)
	}
	e.must(http.StatusOK, "POST", endPath(s1.SessionID), doc, nil, &again)
	if again.State != "ended" || !again.EndedAt.Equal(*first.EndedAt) {
		t.Fatalf("ending twice = %+v, want the same ended_at %v", again, first.EndedAt)
	}
	e.must(http.StatusOK, "POST", endPath(s2.SessionID), adm, nil, nil) // a tenant admin, not in care
	e.must(http.StatusNotFound, "POST", "/v1/operator/tenants/t2/sessions/"+s3.SessionID+"/end", testOperator, nil, nil)
	e.must(http.StatusUnauthorized, "POST", "/v1/operator/tenants/t1/sessions/"+s3.SessionID+"/end", doc, nil, nil)
	e.must(http.StatusOK, "POST", "/v1/operator/tenants/t1/sessions/"+s3.SessionID+"/end", testOperator, nil, nil)

	t.Run("no token is minted for an ended session", func(t *testing.T) {
		code, body := e.call("POST", "/v1/sessions/"+s1.SessionID+"/tokens", doc, nil)
		var ae apiError
		if code != http.StatusConflict || json.Unmarshal(body, &ae) != nil || ae.Code != "session_ended" {
			t.Fatalf("tokens for an ended session: %d %s, want 409 session_ended", code, body)
		}
		e.must(http.StatusForbidden, "POST", "/v1/sessions/"+running.SessionID+"/tokens", other, nil, nil)
		var fresh sessionAnswer
		e.must(http.StatusOK, "POST", "/v1/sessions/"+running.SessionID+"/tokens", doc, nil, &fresh)
		kr, _ := e.keyring(cred)
		c, err := kr.Verify([]byte(fresh.PatientToken), time.Now())
		if err != nil || c.Session != running.SessionID || c.Subject != "p1" || c.Device != "t1-SN1" || fresh.Relay.ID != "r1" {
			t.Fatalf("fresh patient token: %+v %v (relay %+v)", c, err, fresh.Relay)
		}
		if c, err := kr.Verify([]byte(fresh.ClinicianToken), time.Now()); err != nil || c.Subject != "c1" {
			t.Fatalf("fresh clinician token: %+v %v", c, err)
		}
	})

	t.Run("heartbeat answers the ended sessions", func(t *testing.T) {
		var hb heartbeatAnswer
		e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 2, "draining": false,
			"sessions": []string{running.SessionID, s3.SessionID, s1.SessionID, "ses-unknown", s2.SessionID}}, &hb)
		want := []string{s1.SessionID, s2.SessionID, s3.SessionID}
		slices.Sort(want)
		if !slices.Equal(hb.Ended, want) {
			t.Fatalf("ended = %v, want %v", hb.Ended, want)
		}
		var none heartbeatAnswer
		e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 2, "draining": false}, &none)
		if none.Ended == nil || len(none.Ended) != 0 {
			t.Fatalf("heartbeat without sessions: ended = %#v, want []", none.Ended)
		}
	})

	t.Run("heartbeat bounds", func(t *testing.T) {
		many := make([]string, MaxHeartbeatSessions+1)
		for i := range many {
			many[i] = fmt.Sprintf("ses-%d", i)
		}
		code, body := e.call("POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 0, "draining": false, "sessions": many})
		var ae apiError
		if code != http.StatusRequestEntityTooLarge || json.Unmarshal(body, &ae) != nil || ae.Code != "too_many_sessions" ||
			!strings.Contains(ae.Message, "at most 20000") {
			t.Fatalf("%d ids: %d %s, want 413 too_many_sessions", len(many), code, body)
		}
		e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 0, "draining": false, "sessions": many[:MaxHeartbeatSessions]}, nil)
		e.must(http.StatusBadRequest, "POST", "/v1/relay/heartbeat", cred, map[string]any{"load": 0, "draining": false, "sessions": []string{""}}, nil)
		if control.MaxHeartbeatSessions != MaxHeartbeatSessions {
			t.Fatalf("control.MaxHeartbeatSessions %d, controld takes %d", control.MaxHeartbeatSessions, MaxHeartbeatSessions)
		}
	})

	t.Run("relay session state", func(t *testing.T) {
		var st relaySessionAnswer
		e.must(http.StatusOK, "GET", "/v1/relay/sessions/t1/"+s1.SessionID, cred, nil, &st)
		if !st.Ended || st.State != "ended" || st.EndedAt == nil {
			t.Fatalf("state of an ended session = %+v", st)
		}
		e.must(http.StatusOK, "GET", "/v1/relay/sessions/t1/"+running.SessionID, cred, nil, &st)
		if st.Ended || st.State != "created" {
			t.Fatalf("state of a running session = %+v", st)
		}
		e.must(http.StatusNotFound, "GET", "/v1/relay/sessions/t1/ses-unknown", cred, nil, nil)
		e.must(http.StatusUnauthorized, "GET", "/v1/relay/sessions/t1/"+s1.SessionID, doc, nil, nil)
		var c struct {
			Credential string `json:"credential"`
		}
		e.must(http.StatusCreated, "POST", "/v1/operator/relays", testOperator, map[string]any{"id": "r-t2", "region": "eu", "tenant_id": "t2"}, &c)
		e.must(http.StatusForbidden, "GET", "/v1/relay/sessions/t1/"+s1.SessionID, c.Credential, nil, nil)
		var hb heartbeatAnswer // a tenant relay learns only its tenant's sessions
		e.must(http.StatusOK, "POST", "/v1/relay/register", c.Credential, map[string]any{"addresses": map[string]string{"ws": "wss://r-t2.example"}}, nil)
		e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", c.Credential, map[string]any{"load": 0, "draining": false, "sessions": []string{s1.SessionID}}, &hb)
		if len(hb.Ended) != 0 {
			t.Fatalf("t2's relay told of t1's session: %v", hb.Ended)
		}
	})

	t.Run("control.Directory", func(t *testing.T) {
		kr, _ := e.keyring(cred)
		var mu sync.Mutex
		var got [][]string
		ids := []string{running.SessionID, s2.SessionID}
		for i := range MaxHeartbeatSessions + 3 { // two heartbeats; an ended one in each
			ids = append(ids, fmt.Sprintf("ses-live-%d", i))
		}
		ids = append(ids, s1.SessionID)
		dir, err := control.NewDirectory(control.DirectoryConfig{URL: e.hs.URL, Credential: cred, Keyring: kr,
			Addresses: map[string]string{"ws": "wss://r1.example/v1/connect"}, HTTPClient: e.hs.Client(), Logger: quiet(),
			Sessions: func() []string { return ids },
			Ended: func(ended []string) {
				mu.Lock()
				got = append(got, ended)
				mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		if err := dir.Heartbeat(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		calls := slices.Clone(got)
		mu.Unlock()
		if len(calls) != 1 || !slices.Equal(calls[0], []string{s2.SessionID, s1.SessionID}) {
			t.Fatalf("Ended called with %v, want once with [%s %s]", calls, s2.SessionID, s1.SessionID)
		}
		ids = []string{running.SessionID}
		if err := dir.Heartbeat(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n != 1 {
			t.Fatalf("Ended called for a heartbeat with nothing ended")
		}
		for _, c := range []struct {
			id    string
			ended bool
		}{{s1.SessionID, true}, {s3.SessionID, true}, {running.SessionID, false}} {
			if ended, err := dir.SessionEnded(ctxT(t), "t1", c.id); err != nil || ended != c.ended {
				t.Errorf("SessionEnded(%s) = %v, %v; want %v", c.id, ended, err, c.ended)
			}
		}
		if _, err := dir.SessionEnded(ctxT(t), "t1", "ses-unknown"); !errors.Is(err, control.ErrUnknownSession) {
			t.Errorf("SessionEnded of an unknown session: %v, want ErrUnknownSession", err)
		}
	})
}
