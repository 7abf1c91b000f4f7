package controlserver

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// The operator's scheduled-job API: list, create and cancel a tenant's
// jobs (tenant pgstore.SystemTenant for deployment-wide ones). RunJobs
// runs them.

// maxJobList is the most jobs one list answers.
const maxJobList = 500

type jobView struct {
	ID        string          `json:"id"`
	TenantID  string          `json:"tenant_id"`
	Kind      string          `json:"kind"`
	Payload   json.RawMessage `json:"payload"`
	RunAt     time.Time       `json:"run_at"`
	State     string          `json:"state"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

func viewJob(j pgstore.Job) jobView {
	return jobView{ID: j.ID, TenantID: j.TenantID, Kind: j.Kind, Payload: j.Payload, RunAt: j.RunAt, State: j.State,
		Attempts: j.Attempts, LastError: j.LastError, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
}

// listJobs answers the tenant's jobs, newest first; ?state= filters,
// ?limit= (1 to 500, default 100) bounds.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	tenant := r.PathValue("tenant")
	q := r.URL.Query()
	state := q.Get("state")
	switch state {
	case "", pgstore.JobPending, pgstore.JobRunning, pgstore.JobDone, pgstore.JobFailed, pgstore.JobCancelled:
	default:
		return badRequest("state must be pending, running, done, failed or cancelled")
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxJobList {
			return badRequest("limit must be 1 to %d", maxJobList)
		}
		limit = n
	}
	if _, err := s.st.Tenant(r.Context(), tenant); err != nil {
		return s.storeError(r, "tenant", err)
	}
	js, err := s.st.Jobs(r.Context(), tenant, state, limit)
	if err != nil {
		return s.storeError(r, "jobs", err)
	}
	out := make([]jobView, 0, len(js))
	for _, j := range js {
		out = append(out, viewJob(j))
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": out})
	return nil
}

// createJob schedules a job of a known kind, checking its payload now so
// a job never fails for a malformed one later.
func (s *Server) createJob(w http.ResponseWriter, r *http.Request) error {
	tenant := r.PathValue("tenant")
	var req struct {
		ID      string          `json:"id,omitempty"` // default: a random id
		Kind    string          `json:"kind"`
		Payload json.RawMessage `json:"payload,omitempty"`
		RunAt   *time.Time      `json:"run_at,omitempty"` // default: now
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = "job-" + rand.Text()
	}
	if err := checkIDs("tenant", tenant, "id", req.ID); err != nil {
		return err
	}
	kind, ok := jobKinds[req.Kind]
	switch {
	case req.Kind == "":
		return badRequest("kind is required (one of %s)", jobKindNames())
	case !ok:
		return badRequest("kind must be one of %s", jobKindNames())
	case kind.system && tenant != pgstore.SystemTenant:
		return badRequest("kind %s is deployment-wide: create it in tenant %s", req.Kind, pgstore.SystemTenant)
	}
	if string(req.Payload) == "null" {
		req.Payload = nil
	}
	if len(req.Payload) > 0 && req.Payload[0] != '{' {
		return badRequest("payload must be a JSON object")
	}
	if err := kind.check(req.Payload); err != nil {
		return err
	}
	runAt := s.cfg.Now()
	if req.RunAt != nil {
		runAt = *req.RunAt
	}
	j, err := s.st.CreateJob(r.Context(), pgstore.Job{TenantID: tenant, ID: req.ID, Kind: req.Kind, Payload: req.Payload, RunAt: runAt})
	if err != nil {
		return s.storeError(r, "job (or its tenant)", err)
	}
	s.log.InfoContext(r.Context(), "job scheduled", "tenant", tenant, "job", j.ID, "kind", j.Kind, "run_at", j.RunAt)
	writeJSON(w, http.StatusCreated, viewJob(j))
	return nil
}

// cancelJob cancels a pending job; cancelling a cancelled job again is
// fine, one that ran or runs is 409.
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) error {
	tenant, id := r.PathValue("tenant"), r.PathValue("job")
	j, err := s.st.CancelJob(r.Context(), tenant, id)
	if errors.Is(err, pgstore.ErrConflict) {
		return errorf(http.StatusConflict, "job_not_pending", "the job is %s; only a pending job can be cancelled", j.State)
	} else if err != nil {
		return s.storeError(r, "job", err)
	}
	s.log.InfoContext(r.Context(), "job cancelled", "tenant", tenant, "job", id)
	writeJSON(w, http.StatusOK, viewJob(j))
	return nil
}
