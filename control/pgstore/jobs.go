package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Job states.
const (
	JobPending   = "pending"
	JobRunning   = "running"
	JobDone      = "done"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// Job is a scheduled job of a tenant (SystemTenant: deployment-wide).
type Job struct {
	TenantID    string
	ID          string
	Kind        string
	Payload     json.RawMessage // a JSON object; "{}" when empty
	RunAt       time.Time
	State       string // set by the store
	Attempts    int
	LastError   string // ids and reasons only
	LockedBy    string // the runner holding it while running
	LockedUntil *time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

const jobCols = `tenant_id, job_id, kind, payload::text, run_at, state, attempts, last_error,
	coalesce(locked_by, ''), locked_until, created_at, updated_at`

func scanJob(row pgx.Row) (Job, error) {
	var j Job
	var payload string
	err := row.Scan(&j.TenantID, &j.ID, &j.Kind, &payload, &j.RunAt, &j.State, &j.Attempts, &j.LastError,
		&j.LockedBy, &j.LockedUntil, &j.CreatedAt, &j.UpdatedAt)
	j.Payload = json.RawMessage(payload)
	return j, err
}

func collectJobs(rows pgx.Rows, op string) ([]Job, error) {
	js, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) { return scanJob(r) })
	return js, wrap(op, err)
}

// CreateJob adds a pending job. ErrExists if the tenant has a job of the
// same id; ErrNotFound if the tenant does not exist.
func (s *Store) CreateJob(ctx context.Context, j Job) (Job, error) {
	payload := string(j.Payload)
	if payload == "" {
		payload = "{}"
	}
	out, err := scanJob(s.pool.QueryRow(ctx, `INSERT INTO scheduled_jobs (tenant_id, job_id, kind, payload, run_at)
		VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING `+jobCols, j.TenantID, j.ID, j.Kind, payload, j.RunAt))
	return out, wrap("create job", err)
}

// Job returns one job of the tenant.
func (s *Store) Job(ctx context.Context, tenantID, id string) (Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, "SELECT "+jobCols+" FROM scheduled_jobs WHERE tenant_id = $1 AND job_id = $2", tenantID, id))
	return j, wrap("get job", err)
}

// Jobs lists the tenant's jobs, newest first, at most limit; state ""
// lists every state.
func (s *Store) Jobs(ctx context.Context, tenantID, state string, limit int) ([]Job, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+jobCols+` FROM scheduled_jobs
		WHERE tenant_id = $1 AND ($2 = '' OR state = $2) ORDER BY created_at DESC, job_id LIMIT $3`, tenantID, state, limit)
	if err != nil {
		return nil, wrap("list jobs", err)
	}
	return collectJobs(rows, "list jobs")
}

// CancelJob cancels a pending job and returns it. A job cancelled already
// is returned as it is; one running, done or failed is ErrConflict (with
// the job, so the caller can say what it is).
func (s *Store) CancelJob(ctx context.Context, tenantID, id string) (Job, error) {
	var j Job
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		j, err = scanJob(tx.QueryRow(ctx, "SELECT "+jobCols+" FROM scheduled_jobs WHERE tenant_id = $1 AND job_id = $2 FOR UPDATE", tenantID, id))
		if err != nil || j.State != JobPending {
			return err
		}
		j, err = scanJob(tx.QueryRow(ctx, `UPDATE scheduled_jobs SET state = 'cancelled', updated_at = now()
			WHERE tenant_id = $1 AND job_id = $2 RETURNING `+jobCols, tenantID, id))
		return err
	})
	if err != nil {
		return Job{}, wrap("cancel job", err)
	}
	if j.State != JobCancelled {
		return j, fmt.Errorf("pgstore: cancel job: %w: the job is %s", ErrConflict, j.State)
	}
	return j, nil
}

// ClaimJobs marks up to limit due jobs running for runner until now+lease
// and returns them: pending jobs whose run_at has come, and running jobs
// whose lease lapsed (their runner died). Concurrent runners never claim
// the same job (FOR UPDATE SKIP LOCKED). Each claim counts an attempt.
func (s *Store) ClaimJobs(ctx context.Context, runner string, lease time.Duration, limit int) ([]Job, error) {
	rows, err := s.pool.Query(ctx, `UPDATE scheduled_jobs j SET state = 'running', attempts = j.attempts + 1,
			locked_by = $1, locked_until = now() + make_interval(secs => $2), updated_at = now()
		FROM (SELECT tenant_id, job_id FROM scheduled_jobs
			WHERE (state = 'pending' AND run_at <= now()) OR (state = 'running' AND locked_until < now())
			ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED) due
		WHERE j.tenant_id = due.tenant_id AND j.job_id = due.job_id
		RETURNING j.tenant_id, j.job_id, j.kind, j.payload::text, j.run_at, j.state, j.attempts, j.last_error,
			coalesce(j.locked_by, ''), j.locked_until, j.created_at, j.updated_at`, runner, lease.Seconds(), limit)
	if err != nil {
		return nil, wrap("claim jobs", err)
	}
	return collectJobs(rows, "claim jobs")
}

// FinishJob records the end of an attempt by runner: state JobDone, or
// for a failure (errText != "") JobPending again at retryAt when retryAt
// is not zero, else JobFailed. It is fenced on the claim: if another
// runner reclaimed the job meanwhile (or it was not claimed by runner),
// nothing changes and the result is ErrConflict.
func (s *Store) FinishJob(ctx context.Context, tenantID, id, runner, errText string, retryAt time.Time) error {
	state := JobDone
	switch {
	case errText != "" && !retryAt.IsZero():
		state = JobPending
	case errText != "":
		state = JobFailed
	}
	var retry any // NULL: keep run_at
	if state == JobPending {
		retry = retryAt
	}
	tag, err := s.pool.Exec(ctx, `UPDATE scheduled_jobs SET state = $4, last_error = $5,
			run_at = coalesce($6::timestamptz, run_at), locked_by = NULL, locked_until = NULL, updated_at = now()
		WHERE tenant_id = $1 AND job_id = $2 AND state = 'running' AND locked_by = $3`,
		tenantID, id, runner, state, errText, retry)
	if err != nil {
		return wrap("finish job", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("pgstore: finish job: %w: the job is no longer claimed by this runner", ErrConflict)
	}
	return nil
}
