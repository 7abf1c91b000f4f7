package controlserver

import (
	"net/http"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/pgstore/password"
)

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	// Tenant picks the clinic when the same e-mail has an account in
	// several; optional.
	Tenant string `json:"tenant_id,omitempty"`
}

type clinicianView struct {
	ID          string `json:"id"`
	TenantID    string `json:"tenant_id"`
	Email       string `json:"email"`
	Role        string `json:"role"`
	DisplayName string `json:"display_name"`
}

func viewClinician(c pgstore.Clinician) clinicianView {
	return clinicianView{ID: c.ID, TenantID: c.TenantID, Email: c.Email, Role: c.Role, DisplayName: c.DisplayName}
}

type loginAnswer struct {
	Token     string        `json:"token"`
	TokenType string        `json:"token_type"`
	ExpiresAt time.Time     `json:"expires_at"`
	Clinician clinicianView `json:"clinician"`
}

// login checks a clinician's e-mail and password and answers an API
// token. Unknown e-mail, wrong password and a disabled account get the
// same answer and take about the same time.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	now := s.cfg.Now()
	if ok, wait := s.limits.loginIP.take(s.cfg.ClientIP(r), now); !ok {
		return s.throttle(w, "login", "ip", wait, "too many login attempts from your address")
	}
	var req loginRequest
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := required("email", req.Email, "password", req.Password); err != nil {
		return err
	}
	if ok, wait := s.limits.loginName.take(s.limits.nameBucket(req.Email), now); !ok {
		return s.throttle(w, "login", "name", wait, "too many login attempts for this account")
	}
	if len(req.Password) > password.MaxLen {
		return badRequest("password is longer than %d bytes", password.MaxLen)
	}
	cands, err := s.st.CliniciansByEmail(r.Context(), req.Email)
	if err != nil {
		return s.storeError(r, "clinician", err)
	}
	var match *pgstore.Clinician
	checked := false
	for i := range cands {
		c := &cands[i]
		if req.Tenant != "" && c.TenantID != req.Tenant {
			continue
		}
		checked = true
		ok, err := password.Check(c.PasswordHash, req.Password)
		if err != nil {
			s.log.ErrorContext(r.Context(), "stored password hash is malformed", "tenant", c.TenantID, "clinician", c.ID)
			continue
		}
		if ok {
			match = c
			break
		}
	}
	if !checked {
		s.dummyCheck(req.Password)
	}
	if match == nil {
		s.m.logins.WithLabelValues("bad_credentials").Inc()
		return unauthorized("wrong e-mail or password")
	}
	if match.DisabledAt != nil {
		s.m.logins.WithLabelValues("disabled").Inc()
		s.log.InfoContext(r.Context(), "login refused: account disabled", "tenant", match.TenantID, "clinician", match.ID)
		return unauthorized("wrong e-mail or password")
	}
	if password.NeedsRehash(match.PasswordHash) && !weaker(*s.cfg.Password) {
		if h, err := password.HashWith(*s.cfg.Password, req.Password); err == nil {
			if err := s.st.SetClinicianPassword(r.Context(), match.TenantID, match.ID, h); err == nil {
				match.PasswordHash = h
			}
		}
	}
	c := apiClaims{Tenant: match.TenantID, Clinician: match.ID, IssuedAt: now.Unix(),
		Expiry: now.Add(s.cfg.APITokenTTL).Unix(), PasswordTag: passwordTag(match.PasswordHash)}
	tok, err := s.tokens.issue(&c)
	if err != nil {
		return err
	}
	s.m.logins.WithLabelValues("ok").Inc()
	s.log.InfoContext(r.Context(), "clinician logged in", "tenant", match.TenantID, "clinician", match.ID, "request_id", requestID(r.Context()))
	writeJSON(w, http.StatusOK, loginAnswer{Token: tok, TokenType: "Bearer", ExpiresAt: time.Unix(c.Expiry, 0).UTC(), Clinician: viewClinician(*match)})
	return nil
}

// weaker reports whether p is below password.Default (tests use cheap
// parameters; re-hashing up to them would be a downgrade loop).
func weaker(p password.Params) bool {
	return p.Memory < password.Default.Memory || p.Time < password.Default.Time
}

// dummyCheck spends the time of a password check when no account matched.
func (s *Server) dummyCheck(pw string) {
	s.dummyOnce.Do(func() {
		s.dummyHash, _ = password.HashWith(*s.cfg.Password, "stapes-dummy-password")
	})
	_, _ = password.Check(s.dummyHash, pw)
}

// logout ends the presented API token.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, a *clinicianAuth) error {
	s.tokens.deny(a.claims, s.cfg.Now())
	s.log.InfoContext(r.Context(), "clinician logged out", "tenant", a.claims.Tenant, "clinician", a.claims.Clinician)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
