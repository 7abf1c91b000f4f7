package controlserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// partitionInterval is how often RunJobs makes sure the telemetry
// partitions of the coming months exist.
const partitionInterval = 24 * time.Hour

// partitionMonthsAhead is how many months of telemetry partitions are
// created ahead.
const partitionMonthsAhead = 3

// claimBatch is how many due jobs one poll claims at most.
const claimBatch = 10

// jobKind is a kind of scheduled job: how its payload is checked when
// the job is created, and how it runs.
type jobKind struct {
	// system: only in tenant pgstore.SystemTenant (it is deployment-wide).
	system bool
	// check validates a payload (a JSON object) as a 400 naming the field.
	check func(payload json.RawMessage) error
	// run runs the job. Its error text is stored (last_error): ids and
	// reasons only.
	run func(ctx context.Context, s *Server, j pgstore.Job) error
}

// jobKinds are the kinds controld runs, by name.
var jobKinds = map[string]jobKind{
	// telemetry_partitions {"months_ahead": 1..24 (default 3)}: create the
	// monthly device_telemetry partitions ahead now (RunJobs also does it
	// daily on its own).
	"telemetry_partitions": {system: true, check: checkPartitionsPayload, run: runPartitions},
	// expire_sessions {"max_age": Go duration ≥ 1m (default "24h")}: move
	// the tenant's sessions created longer ago than max_age that are not
	// over to "expired" (every tenant's, in pgstore.SystemTenant); relays
	// learn it from their heartbeat answer.
	"expire_sessions": {check: checkExpirePayload, run: runExpire},
}

func jobKindNames() string {
	names := make([]string, 0, len(jobKinds))
	for n := range jobKinds {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// decodePayload decodes a job payload strictly into v.
func decodePayload(payload json.RawMessage, v any) error {
	if len(payload) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("payload: %v", jsonError(err, 0).Message)
	}
	return nil
}

type partitionsPayload struct {
	MonthsAhead *int `json:"months_ahead"`
}

func checkPartitionsPayload(payload json.RawMessage) error {
	var p partitionsPayload
	if err := decodePayload(payload, &p); err != nil {
		return err
	}
	if p.MonthsAhead != nil && (*p.MonthsAhead < 1 || *p.MonthsAhead > 24) {
		return badRequest("payload.months_ahead must be 1 to 24")
	}
	return nil
}

func runPartitions(ctx context.Context, s *Server, j pgstore.Job) error {
	var p partitionsPayload
	if err := decodePayload(j.Payload, &p); err != nil {
		return err
	}
	months := partitionMonthsAhead
	if p.MonthsAhead != nil {
		months = *p.MonthsAhead
	}
	n, err := s.st.EnsureTelemetryPartitions(ctx, months)
	if err == nil && n > 0 {
		s.log.InfoContext(ctx, "telemetry partitions created", "count", n, "job", j.ID)
	}
	return err
}

type expirePayload struct {
	MaxAge string `json:"max_age"`
}

func (p expirePayload) maxAge() (time.Duration, error) {
	if p.MaxAge == "" {
		return 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(p.MaxAge)
	if err != nil || d < time.Minute {
		return 0, badRequest(`payload.max_age must be a duration of at least 1m, e.g. "24h"`)
	}
	return d, nil
}

func checkExpirePayload(payload json.RawMessage) error {
	var p expirePayload
	if err := decodePayload(payload, &p); err != nil {
		return err
	}
	_, err := p.maxAge()
	return err
}

func runExpire(ctx context.Context, s *Server, j pgstore.Job) error {
	var p expirePayload
	if err := decodePayload(j.Payload, &p); err != nil {
		return err
	}
	age, err := p.maxAge()
	if err != nil {
		return err
	}
	tenant := j.TenantID
	if tenant == pgstore.SystemTenant {
		tenant = ""
	}
	n, err := s.st.ExpireSessions(ctx, tenant, s.cfg.Now().Add(-age))
	if err == nil && n > 0 {
		s.log.InfoContext(ctx, "sessions expired", "tenant", j.TenantID, "count", n, "job", j.ID)
	}
	return err
}

// RunJobs runs controld's periodic work until ctx ends, and returns ctx's
// error:
//   - creating the monthly device_telemetry partitions ahead (at start,
//     then daily);
//   - every JobPollInterval, the scheduled jobs that are due (any tenant),
//     claimed for Config.JobLease so that several controlds share the
//     work and a job whose controld died runs again. A failed attempt is
//     retried with backoff up to JobMaxAttempts, then marked failed.
//
// Failures are logged and retried at the next tick.
func (s *Server) RunJobs(ctx context.Context) error {
	parts := time.NewTicker(partitionInterval)
	defer parts.Stop()
	poll := time.NewTicker(s.cfg.JobPollInterval)
	defer poll.Stop()
	s.ensurePartitions(ctx)
	s.runDueJobs(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-parts.C:
			s.ensurePartitions(ctx)
		case <-poll.C:
			s.runDueJobs(ctx)
		}
	}
}

func (s *Server) ensurePartitions(ctx context.Context) {
	n, err := s.st.EnsureTelemetryPartitions(ctx, partitionMonthsAhead)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.WarnContext(ctx, "creating telemetry partitions failed; retrying later", "err", err)
	case n > 0:
		s.log.InfoContext(ctx, "telemetry partitions created", "count", n)
	}
}

// runDueJobs claims the due jobs and runs them, one after the other,
// until none is due (bounded: at most 100 batches a poll).
func (s *Server) runDueJobs(ctx context.Context) {
	for range 100 {
		jobs, err := s.st.ClaimJobs(ctx, s.cfg.InstanceID, s.cfg.JobLease, claimBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.WarnContext(ctx, "claiming scheduled jobs failed; retrying later", "err", err)
			}
			return
		}
		for _, j := range jobs {
			s.runJob(ctx, j)
		}
		if len(jobs) < claimBatch {
			return
		}
	}
}

// runJob runs one claimed job and records how it went.
func (s *Server) runJob(ctx context.Context, j pgstore.Job) {
	kind, known := jobKinds[j.Kind]
	label := j.Kind
	var err error
	if !known {
		label = "unknown"
		err = fmt.Errorf("controld %s does not know job kind %q", s.cfg.InstanceID, j.Kind)
	} else {
		jctx, cancel := context.WithTimeout(ctx, s.cfg.JobLease)
		err = kind.run(jctx, s, j)
		cancel()
	}
	if ctx.Err() != nil {
		return // shutting down: the lease lapses and the job runs again
	}
	var retryAt time.Time
	result, errText := "done", ""
	if err != nil {
		errText = jobErrorText(err)
		result = "failed"
		if known && j.Attempts < s.cfg.JobMaxAttempts {
			result = "retry"
			backoff := min(time.Duration(1<<min(j.Attempts, 10))*time.Second, 10*time.Minute)
			retryAt = s.cfg.Now().Add(backoff/2 + rand.N(backoff/2+1))
		}
	}
	if ferr := s.st.FinishJob(ctx, j.TenantID, j.ID, s.cfg.InstanceID, errText, retryAt); ferr != nil {
		if errors.Is(ferr, pgstore.ErrConflict) {
			result = "lost" // the lease lapsed and another controld took the job
		} else if ctx.Err() == nil {
			s.log.WarnContext(ctx, "recording a job's result failed; it runs again when its lease lapses", "tenant", j.TenantID, "job", j.ID, "err", ferr)
		}
	}
	s.m.jobs.WithLabelValues(label, result).Inc()
	if err != nil {
		s.log.WarnContext(ctx, "scheduled job failed", "tenant", j.TenantID, "job", j.ID, "kind", label,
			"attempt", j.Attempts, "result", result, "err", errText)
	}
}

// jobErrorText is what is stored of a job's error: an API error's message,
// else the error text, bounded.
func jobErrorText(err error) string {
	msg := err.Error()
	var ae *apiError
	if errors.As(err, &ae) {
		msg = ae.Message
	}
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return msg
}
