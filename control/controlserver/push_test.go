package controlserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPushRegistrations: a patient's app registers and unregisters push
// tokens with its session token; the push token is never answered; other
// credentials, other roles, ended sessions and revoked keys are refused.
func TestPushRegistrations(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 0)
	e.must(http.StatusOK, "POST", "/v1/operator/tenants/t1/care", testOperator, map[string]any{"clinician_id": "c1", "patient_id": "p2"}, nil)
	doc := e.login("t1")
	s := e.session(doc, "t1")
	var s2 sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", doc, map[string]any{"patient_id": "p2"}, &s2)
	const secret = "fcm-device-token-0123456789"

	var reg pushView
	e.must(http.StatusOK, "PUT", "/v1/push/registrations/inst-1", s.PatientToken, map[string]any{"provider": "fcm", "push_token": secret}, &reg)
	sum := sha256.Sum256([]byte(secret))
	if reg.InstallationID != "inst-1" || reg.Provider != "fcm" || reg.TokenFingerprint != "sha256:"+hex.EncodeToString(sum[:6]) {
		t.Fatalf("registration = %+v", reg)
	}
	e.must(http.StatusOK, "PUT", "/v1/push/registrations/inst-2", s.PatientToken, map[string]any{"provider": "webhook", "push_token": "https://hooks.example/p1"}, nil)
	e.must(http.StatusOK, "PUT", "/v1/push/registrations/inst-1", s2.PatientToken, map[string]any{"provider": "apns", "push_token": "apns-token-of-p2"}, nil)
	code, body := e.call("GET", "/v1/push/registrations", s.PatientToken, nil)
	var list struct {
		Registrations []pushView `json:"registrations"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Registrations) != 2 ||
		list.Registrations[0].Provider != "fcm" || list.Registrations[1].Provider != "webhook" {
		t.Fatalf("p1's registrations: %d %s, want inst-1 (fcm) and inst-2 (webhook)", code, body)
	}
	if strings.Contains(string(body), secret) || strings.Contains(string(body), "hooks.example") {
		t.Fatalf("the list answers a push token: %s", body)
	}

	tests := []struct {
		name     string
		method   string
		path     string
		bearer   string
		body     any
		want     int
		wantCode string
	}{
		{"no token", "GET", "/v1/push/registrations", "", nil, 401, "unauthorized"},
		{"clinician API token", "GET", "/v1/push/registrations", doc, nil, 401, "unauthorized"},
		{"operator token", "GET", "/v1/push/registrations", testOperator, nil, 401, "unauthorized"},
		{"clinician session token", "GET", "/v1/push/registrations", s.ClinicianToken, nil, 403, "not_patient"},
		{"forged signature", "GET", "/v1/push/registrations", s.PatientToken[:len(s.PatientToken)-4] + "AAAA", nil, 401, "unauthorized"},
		{"unknown provider", "PUT", "/v1/push/registrations/i9", s.PatientToken, map[string]any{"provider": "pigeon", "push_token": "x"}, 400, "bad_request"},
		{"plain-http webhook", "PUT", "/v1/push/registrations/i9", s.PatientToken, map[string]any{"provider": "webhook", "push_token": "http://hooks.example/x"}, 400, "bad_request"},
		{"token with a space", "PUT", "/v1/push/registrations/i9", s.PatientToken, map[string]any{"provider": "fcm", "push_token": "a b"}, 400, "bad_request"},
		{"token too long", "PUT", "/v1/push/registrations/i9", s.PatientToken, map[string]any{"provider": "fcm", "push_token": strings.Repeat("x", maxPushToken+1)}, 400, "bad_request"},
		{"no token field", "PUT", "/v1/push/registrations/i9", s.PatientToken, map[string]any{"provider": "fcm"}, 400, "bad_request"},
		{"delete unknown", "DELETE", "/v1/push/registrations/i9", s.PatientToken, nil, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.call(tt.method, tt.path, tt.bearer, tt.body)
			var ae apiError
			if code != tt.want || json.Unmarshal(body, &ae) != nil || ae.Code != tt.wantCode {
				t.Fatalf("%d %s, want %d %s", code, body, tt.want, tt.wantCode)
			}
			if strings.Contains(string(body), "hooks.example") {
				t.Fatalf("the error quotes the push token: %s", body)
			}
		})
	}

	e.must(http.StatusNoContent, "DELETE", "/v1/push/registrations/inst-2", s.PatientToken, nil, nil)
	e.must(http.StatusNotFound, "DELETE", "/v1/push/registrations/inst-2", s.PatientToken, nil, nil)
	if ps, err := e.st.PushRegistrations(ctxT(t), "t1", "p2"); err != nil || len(ps) != 1 || ps[0].Token != "apns-token-of-p2" {
		t.Fatalf("p2's registrations after p1's changes: %+v %v", ps, err)
	}

	t.Run("expired token", func(t *testing.T) {
		late := newEnvOn(t, e, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) } })
		old := late.session(late.login("t1"), "t1")
		code, body := e.call("GET", "/v1/push/registrations", old.PatientToken, nil)
		if code != http.StatusUnauthorized || !strings.Contains(string(body), "expired") {
			t.Fatalf("expired token: %d %s", code, body)
		}
	})
	t.Run("ended session", func(t *testing.T) {
		e.must(http.StatusOK, "POST", "/v1/sessions/"+s.SessionID+"/end", doc, nil, nil)
		code, body := e.call("PUT", "/v1/push/registrations/inst-3", s.PatientToken, map[string]any{"provider": "fcm", "push_token": "t"})
		if code != http.StatusUnauthorized || !strings.Contains(string(body), "ended") {
			t.Fatalf("token of an ended session: %d %s", code, body)
		}
	})
	t.Run("revoked key", func(t *testing.T) {
		e.must(http.StatusOK, "POST", "/v1/operator/signing-keys/"+s2.KeyID+"/revoke", testOperator, nil, nil)
		e.must(http.StatusUnauthorized, "GET", "/v1/push/registrations", s2.PatientToken, nil, nil)
	})
}
