package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Subject roles of RTT reports.
const (
	RTTClinician = "clinician"
	RTTPatient   = "patient"
)

// MaxRTTs bounds the relays of one RTT report.
const MaxRTTs = 256

// RTTReport is what one client measured: the median RTT to each relay it
// probed, in milliseconds. It hints at where the client is: never log it.
type RTTReport struct {
	TenantID   string
	Role       string // RTTClinician or RTTPatient
	SubjectID  string // clinician or patient id
	RTTs       map[string]float64
	MeasuredAt time.Time // when it was reported (PutRTTs: zero is now); RTTs answers the oldest row's
}

// PutRTTs replaces the subject's RTT report with r (one transaction); an
// empty report removes it. ErrInvalid for an unknown role, more than
// MaxRTTs relays or an RTT outside 0..60000 ms.
func (s *Store) PutRTTs(ctx context.Context, r RTTReport) error {
	if r.Role != RTTClinician && r.Role != RTTPatient {
		return fmt.Errorf("%w: RTT report role %q", ErrInvalid, r.Role)
	}
	if len(r.RTTs) > MaxRTTs {
		return fmt.Errorf("%w: RTT report of %d relays, at most %d", ErrInvalid, len(r.RTTs), MaxRTTs)
	}
	ids := make([]string, 0, len(r.RTTs))
	vals := make([]float32, 0, len(r.RTTs))
	for id, v := range r.RTTs {
		if !(v >= 0 && v <= 60000) {
			return fmt.Errorf("%w: RTT out of range 0..60000 ms", ErrInvalid)
		}
		ids, vals = append(ids, id), append(vals, float32(v))
	}
	at := r.MeasuredAt
	if at.IsZero() {
		at = time.Now()
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM relay_rtts WHERE tenant_id = $1 AND subject_role = $2 AND subject_id = $3`,
			r.TenantID, r.Role, r.SubjectID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO relay_rtts (tenant_id, subject_role, subject_id, relay_id, rtt_ms, measured_at)
			SELECT $1, $2, $3, id, v, $6 FROM unnest($4::text[], $5::real[]) AS u(id, v)`,
			r.TenantID, r.Role, r.SubjectID, ids, vals, at)
		return err
	})
	return wrap("put RTT report", err)
}

// RTTs returns the subject's RTT report, without relays measured before
// since; an empty report (RTTs empty, not nil) if there is none.
func (s *Store) RTTs(ctx context.Context, tenantID, role, subjectID string, since time.Time) (RTTReport, error) {
	out := RTTReport{TenantID: tenantID, Role: role, SubjectID: subjectID, RTTs: map[string]float64{}}
	rows, err := s.pool.Query(ctx, `SELECT relay_id, rtt_ms, measured_at FROM relay_rtts
		WHERE tenant_id = $1 AND subject_role = $2 AND subject_id = $3 AND measured_at >= $4`,
		tenantID, role, subjectID, since)
	if err != nil {
		return out, wrap("RTT report", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var v float32
		var at time.Time
		if err := rows.Scan(&id, &v, &at); err != nil {
			return out, wrap("RTT report", err)
		}
		out.RTTs[id] = float64(v)
		if out.MeasuredAt.IsZero() || at.Before(out.MeasuredAt) {
			out.MeasuredAt = at
		}
	}
	return out, wrap("RTT report", rows.Err())
}
