package controlserver

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore/password"
	"github.com/stapes-relay/stapes/token"
)

func TestLogin(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	tests := []struct {
		name string
		body any
		want int
	}{
		{"good password", map[string]any{"email": "doc@t1.example", "password": testPassword}, http.StatusOK},
		{"e-mail in other case and spaces", map[string]any{"email": " DOC@t1.Example ", "password": testPassword}, http.StatusOK},
		{"wrong password", map[string]any{"email": "doc@t1.example", "password": testPassword + "x"}, http.StatusUnauthorized},
		{"unknown e-mail", map[string]any{"email": "nobody@t1.example", "password": testPassword}, http.StatusUnauthorized},
		{"wrong tenant named", map[string]any{"email": "doc@t1.example", "password": testPassword, "tenant_id": "t2"}, http.StatusUnauthorized},
		{"no password", map[string]any{"email": "doc@t1.example"}, http.StatusBadRequest},
		{"unknown field", map[string]any{"email": "doc@t1.example", "password": testPassword, "pin": 1}, http.StatusBadRequest},
		{"not an object", []int{1}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.call("POST", "/v1/login", "", tt.body)
			if code != tt.want {
				t.Fatalf("status = %d %s, want %d", code, body, tt.want)
			}
			if code != http.StatusOK {
				var ae apiError
				if err := json.Unmarshal(body, &ae); err != nil || ae.Code == "" || ae.Message == "" {
					t.Fatalf("error body %s is not {code, message}", body)
				}
				if strings.Contains(string(body), testPassword) || strings.Contains(string(body), "doc@") {
					t.Fatalf("error body %s repeats the credentials", body)
				}
				return
			}
			var a loginAnswer
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(a.Token, apiTokenPrefix) || a.Clinician.ID != "c1" || a.Clinician.TenantID != "t1" ||
				time.Until(a.ExpiresAt) < 11*time.Hour {
				t.Fatalf("login answer = %+v", a)
			}
		})
	}

	t.Run("token works until logout", func(t *testing.T) {
		tok := e.login("t1")
		e.must(http.StatusOK, "GET", "/v1/patients", tok, nil, nil)
		e.must(http.StatusNoContent, "POST", "/v1/logout", tok, nil, nil)
		e.must(http.StatusUnauthorized, "GET", "/v1/patients", tok, nil, nil)
	})
	t.Run("password change ends older tokens", func(t *testing.T) {
		tok := e.login("t1")
		h, err := password.HashWith(cheap, "another long password")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.st.SetClinicianPassword(ctxT(t), "t1", "c1", h); err != nil {
			t.Fatal(err)
		}
		e.must(http.StatusUnauthorized, "GET", "/v1/patients", tok, nil, nil)
		e.must(http.StatusOK, "POST", "/v1/login", "", map[string]any{"email": "doc@t1.example", "password": "another long password"}, nil)
	})
}

func TestPatients(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	e.clinic("t2")
	var got struct {
		Patients []patientView `json:"patients"`
	}
	e.must(http.StatusOK, "GET", "/v1/patients", e.login("t1"), nil, &got)
	if len(got.Patients) != 1 || got.Patients[0].ID != "p1" || len(got.Patients[0].Devices) != 1 ||
		got.Patients[0].Devices[0] != (deviceView{Serial: "t1-SN1", Model: "m1", Firmware: "1.0", ConfigVersion: 0}) {
		t.Fatalf("patients = %+v, want p1 with t1-SN1 only", got.Patients)
	}
}

// keyring fetches /v1/relay/keys as a relay and builds a token.Keyring,
// revoking the kids flagged revoked.
func (e *env) keyring(cred string) (*token.Keyring, []keyView) {
	e.t.Helper()
	var ks struct {
		Keys []keyView `json:"keys"`
	}
	e.must(http.StatusOK, "GET", "/v1/relay/keys", cred, nil, &ks)
	kr := token.NewKeyring()
	for _, k := range ks.Keys {
		pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := kr.Add(k.KID, pub); err != nil {
			e.t.Fatal(err)
		}
		if k.Revoked {
			kr.Revoke(k.KID)
		}
	}
	return kr, ks.Keys
}

func TestSessionTokensVerifyWithRelayKeys(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	cred := e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 3)
	tok := e.login("t1")
	var s sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1", "device_serial": "t1-SN1"}, &s)
	if s.Relay != (relayView{ID: "r1", Region: "eu", WSURL: "wss://r1.example/v1/connect", QUICURL: "quic://r1"}) {
		t.Fatalf("relay = %+v", s.Relay)
	}
	if s.Device == nil || s.Device.Serial != "t1-SN1" || s.Device.ConfigVersion != 0 {
		t.Fatalf("device = %+v", s.Device)
	}
	kr, _ := e.keyring(cred)
	for _, side := range []struct {
		tok, role, subject string
	}{{s.ClinicianToken, token.RoleClinician, "c1"}, {s.PatientToken, token.RolePatient, "p1"}} {
		c, err := kr.Verify([]byte(side.tok), time.Now())
		if err != nil {
			t.Fatalf("%s token: %v", side.role, err)
		}
		want := token.Claims{Tenant: "t1", Subject: side.subject, Role: side.role, Session: s.SessionID, Device: "t1-SN1",
			Model: "m1", Relay: "r1", Expiry: c.IssuedAt + 3600, IssuedAt: c.IssuedAt, ID: c.ID, KeyID: s.KeyID}
		if c != want || c.ID == "" {
			t.Fatalf("%s claims = %+v, want %+v", side.role, c, want)
		}
	}
	x, err := e.st.Session(ctxT(t), "t1", s.SessionID)
	if err != nil || x.ClinicianID != "c1" || x.PatientID != "p1" || x.DeviceSerial != "t1-SN1" || x.RelayNodeID != "r1" || x.State != "created" {
		t.Fatalf("session row = %+v, %v", x, err)
	}

	// Rotation: a new key signs new sessions; the old key still verifies
	// the tokens it signed.
	var nk struct {
		KID string `json:"kid"`
	}
	e.must(http.StatusCreated, "POST", "/v1/operator/signing-keys", testOperator, nil, &nk)
	e.srv.keys.invalidate() // as if KeyCacheTTL had passed
	var s2 sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1"}, &s2)
	if s2.KeyID != nk.KID || s2.KeyID == s.KeyID || s2.Device != nil {
		t.Fatalf("after rotation: kid %s (device %+v), want new kid %s", s2.KeyID, s2.Device, nk.KID)
	}
	kr, keys := e.keyring(cred)
	if len(keys) != 2 {
		t.Fatalf("keys = %+v, want 2", keys)
	}
	for _, tk := range []string{s.ClinicianToken, s2.PatientToken} {
		if _, err := kr.Verify([]byte(tk), time.Now()); err != nil {
			t.Fatalf("token after rotation: %v", err)
		}
	}
}

func TestAuthorizationMatrix(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	e.clinic("t2")
	e.must(http.StatusCreated, "POST", "/v1/operator/tenants/t2/patients", testOperator, map[string]any{"id": "only-in-t2"}, nil)
	cred := e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 0)
	tok := e.login("t1")

	// An API token from a controld whose clock is 13 hours ahead: expired.
	late := newEnvOn(t, e, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(13 * time.Hour) } })
	// A token signed with another secret.
	other := newEnvOn(t, e, func(c *Config) { c.Secret = []byte(strings.Repeat("x", 32)) })
	var otherLogin loginAnswer
	other.must(http.StatusOK, "POST", "/v1/login", "", map[string]any{"email": "doc@t1.example", "password": testPassword}, &otherLogin)

	forged := cred[:len(cred)-4] + "AAAA"
	sess := e.session(tok, "t1")
	end := "/v1/sessions/" + sess.SessionID + "/end"
	tests := []struct {
		name         string
		method, path string
		bearer       string
		body         any
		want         int
		wantCode     string
	}{
		{"patients without token", "GET", "/v1/patients", "", nil, 401, "unauthorized"},
		{"patients with garbage token", "GET", "/v1/patients", "sta1.garbage.garbage", nil, 401, "unauthorized"},
		{"patients with another deployment's token", "GET", "/v1/patients", otherLogin.Token, nil, 401, "unauthorized"},
		{"patients with the operator token", "GET", "/v1/patients", testOperator, nil, 401, "unauthorized"},
		{"session without token", "POST", "/v1/sessions", "", map[string]any{"patient_id": "p1"}, 401, "unauthorized"},
		{"other tenant's patient", "POST", "/v1/sessions", tok, map[string]any{"patient_id": "only-in-t2"}, 403, "not_in_care"},
		{"patient not in care", "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p2"}, 403, "not_in_care"},
		{"device of another patient", "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1", "device_serial": "t1-SN2"}, 403, "device_not_assigned"},
		{"other tenant's device", "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1", "device_serial": "t2-SN1"}, 403, "device_not_assigned"},
		{"session without patient", "POST", "/v1/sessions", tok, map[string]any{}, 400, "bad_request"},
		{"operator API without token", "GET", "/v1/operator/tenants", "", nil, 401, "unauthorized"},
		{"operator API with a clinician token", "GET", "/v1/operator/tenants", tok, nil, 401, "unauthorized"},
		{"operator API with a wrong token", "POST", "/v1/operator/tenants", testOperator + "x", map[string]any{"id": "t9", "name": "x"}, 401, "unauthorized"},
		{"relay keys without credential", "GET", "/v1/relay/keys", "", nil, 401, "unauthorized"},
		{"relay keys with a forged credential", "GET", "/v1/relay/keys", forged, nil, 401, "unauthorized"},
		{"relay keys with the operator token", "GET", "/v1/relay/keys", testOperator, nil, 401, "unauthorized"},
		{"heartbeat with a clinician token", "POST", "/v1/relay/heartbeat", tok, map[string]any{"load": 1, "draining": false}, 401, "unauthorized"},
		{"sync with a wrong credential", "POST", "/v1/relay/sync", forged, nil, 401, "unauthorized"},
		{"relay reads another relay's tenant device (shared relay may)", "GET", "/v1/relay/devices/t2/t2-SN1/config", cred, nil, 200, ""},
		{"end session without token", "POST", end, "", nil, 401, "unauthorized"},
		{"end session with the operator token", "POST", end, testOperator, nil, 401, "unauthorized"},
		{"end session with a session token", "POST", end, sess.ClinicianToken, nil, 401, "unauthorized"},
		{"end another tenant's session", "POST", end, e.login("t2"), nil, 404, "not_found"},
		{"end a session through another tenant (operator)", "POST", "/v1/operator/tenants/t2/sessions/" + sess.SessionID + "/end", testOperator, nil, 404, "not_found"},
		{"new tokens for another tenant's session", "POST", "/v1/sessions/" + sess.SessionID + "/tokens", e.login("t2"), nil, 404, "not_found"},
		{"relay session state without credential", "GET", "/v1/relay/sessions/t1/" + sess.SessionID, "", nil, 401, "unauthorized"},
		{"push with a clinician API token", "GET", "/v1/push/registrations", tok, nil, 401, "unauthorized"},
		{"push with a clinician session token", "GET", "/v1/push/registrations", sess.ClinicianToken, nil, 403, "not_patient"},
		{"push with a node credential", "GET", "/v1/push/registrations", cred, nil, 401, "unauthorized"},
		{"jobs with a clinician token", "GET", "/v1/operator/tenants/t1/jobs", tok, nil, 401, "unauthorized"},
		{"jobs with a patient session token", "POST", "/v1/operator/tenants/t1/jobs", sess.PatientToken, map[string]any{"kind": "expire_sessions"}, 401, "unauthorized"},
		{"public map without credential", "GET", "/v1/map", "", nil, 200, ""},
		{"unknown endpoint", "GET", "/v1/nope", "", nil, 404, "not_found"},
		{"wrong method", "DELETE", "/v1/login", "", nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.call(tt.method, tt.path, tt.bearer, tt.body)
			if code != tt.want {
				t.Fatalf("status = %d %s, want %d", code, body, tt.want)
			}
			if tt.wantCode != "" {
				var ae apiError
				if err := json.Unmarshal(body, &ae); err != nil || ae.Code != tt.wantCode {
					t.Fatalf("body = %s, want code %q", body, tt.wantCode)
				}
			}
		})
	}
	t.Run("expired API token", func(t *testing.T) {
		late.must(http.StatusUnauthorized, "GET", "/v1/patients", tok, nil, nil)
	})
	t.Run("tenant's own relay may not read another tenant", func(t *testing.T) {
		var c struct {
			Credential string `json:"credential"`
		}
		e.must(http.StatusCreated, "POST", "/v1/operator/relays", testOperator, map[string]any{"id": "r-t1", "region": "eu", "tenant_id": "t1"}, &c)
		e.must(http.StatusForbidden, "GET", "/v1/relay/devices/t2/t2-SN1/config", c.Credential, nil, nil)
		e.must(http.StatusOK, "GET", "/v1/relay/devices/t1/t1-SN1/config", c.Credential, nil, nil)
	})
	t.Run("rotated relay credential", func(t *testing.T) {
		var c struct {
			Credential string `json:"credential"`
		}
		e.must(http.StatusConflict, "POST", "/v1/operator/relays", testOperator, map[string]any{"id": "r1", "region": "eu"}, nil)
		e.must(http.StatusCreated, "POST", "/v1/operator/relays", testOperator, map[string]any{"id": "r1", "region": "eu", "rotate": true}, &c)
		e.must(http.StatusUnauthorized, "GET", "/v1/relay/keys", cred, nil, nil)
		e.must(http.StatusOK, "GET", "/v1/relay/keys", c.Credential, nil, nil)
	})
}

// newEnvOn is another controld on the same database as e.
func newEnvOn(t *testing.T, e *env, adjust func(*Config)) *env {
	t.Helper()
	cfg := Config{Store: e.st, Secret: testSecret, OperatorToken: testOperator, Password: &cheap, Logger: quiet()}
	adjust(&cfg)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e2 := &env{t: t, st: e.st, srv: srv}
	e2.hs = newServer(t, srv)
	return e2
}

func TestRevokedKeyNotServedAsValid(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	cred := e.relayNode("r1", "eu", "wss://r1.example/v1/connect", 0)
	tok := e.login("t1")
	var s sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1"}, &s)

	e.must(http.StatusOK, "POST", "/v1/operator/signing-keys/"+s.KeyID+"/revoke", testOperator, nil, nil)
	e.must(http.StatusNotFound, "POST", "/v1/operator/signing-keys/no-such-kid/revoke", testOperator, nil, nil)
	kr, keys := e.keyring(cred)
	if len(keys) != 1 || keys[0].KID != s.KeyID || !keys[0].Revoked {
		t.Fatalf("keys = %+v, want %s flagged revoked", keys, s.KeyID)
	}
	if _, err := kr.Verify([]byte(s.ClinicianToken), time.Now()); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("token of a revoked kid: %v, want ErrRevoked", err)
	}
	// With every key revoked, the next session gets a new key.
	var s2 sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", tok, map[string]any{"patient_id": "p1"}, &s2)
	if s2.KeyID == s.KeyID {
		t.Fatalf("signed with the revoked kid %s", s.KeyID)
	}
	kr, _ = e.keyring(cred)
	if _, err := kr.Verify([]byte(s2.PatientToken), time.Now()); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	// Another controld of the deployment (same secret) signs with the same
	// key; one with another secret cannot open it and makes its own.
	same := newEnvOn(t, e, func(*Config) {})
	if kid, err := same.srv.EnsureSigningKey(ctxT(t)); err != nil || kid != s2.KeyID {
		t.Fatalf("same-secret controld signs with %q (%v), want %s", kid, err, s2.KeyID)
	}
	other := newEnvOn(t, e, func(c *Config) { c.Secret = []byte(strings.Repeat("y", 32)) })
	if kid, err := other.srv.EnsureSigningKey(ctxT(t)); err != nil || kid == s2.KeyID {
		t.Fatalf("other-secret controld signs with %q (%v), want a key of its own", kid, err)
	}
}
