package pgstore

import (
	"errors"
	"math"
	"testing"
	"time"
)

// TestRTTReports: a report replaces the subject's earlier one, stays
// within its tenant, role and subject, ages out by since, and bad reports
// are refused before anything is written.
func TestRTTReports(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "t1")
	clinic(t, s, "t2")
	old := time.Now().Add(-2 * time.Hour)
	mustOK(t, s.PutRTTs(ctx, RTTReport{TenantID: "t1", Role: RTTPatient, SubjectID: "p1", RTTs: map[string]float64{"eu-1": 80.5, "us-1": 180}, MeasuredAt: old}))
	mustOK(t, s.PutRTTs(ctx, RTTReport{TenantID: "t1", Role: RTTClinician, SubjectID: "p1", RTTs: map[string]float64{"eu-1": 1}}))
	mustOK(t, s.PutRTTs(ctx, RTTReport{TenantID: "t2", Role: RTTPatient, SubjectID: "p1", RTTs: map[string]float64{"ap-1": 3}}))

	got := must[RTTReport](t)(s.RTTs(ctx, "t1", RTTPatient, "p1", old.Add(-time.Minute)))
	if len(got.RTTs) != 2 || math.Abs(got.RTTs["eu-1"]-80.5) > 1e-3 || got.RTTs["us-1"] != 180 {
		t.Fatalf("t1 p1 RTTs = %v, want eu-1 80.5 and us-1 180", got.RTTs)
	}
	if d := got.MeasuredAt.Sub(old); d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("measured_at %v, want %v", got.MeasuredAt, old)
	}
	if got := must[RTTReport](t)(s.RTTs(ctx, "t1", RTTPatient, "p1", time.Now().Add(-time.Hour))); len(got.RTTs) != 0 {
		t.Fatalf("an old report is still served: %v", got.RTTs)
	}

	// A new report replaces the old one as a whole.
	mustOK(t, s.PutRTTs(ctx, RTTReport{TenantID: "t1", Role: RTTPatient, SubjectID: "p1", RTTs: map[string]float64{"ap-1": 240}}))
	got = must[RTTReport](t)(s.RTTs(ctx, "t1", RTTPatient, "p1", time.Time{}))
	if len(got.RTTs) != 1 || got.RTTs["ap-1"] != 240 {
		t.Fatalf("after the second report: %v, want only ap-1 240", got.RTTs)
	}
	// Other tenants and roles are untouched.
	if got := must[RTTReport](t)(s.RTTs(ctx, "t2", RTTPatient, "p1", time.Time{})); got.RTTs["ap-1"] != 3 || len(got.RTTs) != 1 {
		t.Fatalf("t2's report changed: %v", got.RTTs)
	}
	if got := must[RTTReport](t)(s.RTTs(ctx, "t1", RTTClinician, "p1", time.Time{})); got.RTTs["eu-1"] != 1 {
		t.Fatalf("the clinician-role report changed: %v", got.RTTs)
	}

	big := map[string]float64{}
	for i := range MaxRTTs + 1 {
		big[string(rune('a'+i%26))+string(rune('a'+i/26))] = 1
	}
	bad := []RTTReport{
		{TenantID: "t1", Role: "nurse", SubjectID: "p1", RTTs: map[string]float64{"x": 1}},
		{TenantID: "t1", Role: RTTPatient, SubjectID: "p1", RTTs: map[string]float64{"x": -1}},
		{TenantID: "t1", Role: RTTPatient, SubjectID: "p1", RTTs: map[string]float64{"x": math.NaN()}},
		{TenantID: "t1", Role: RTTPatient, SubjectID: "p1", RTTs: map[string]float64{"x": 60001}},
		{TenantID: "t1", Role: RTTPatient, SubjectID: "p1", RTTs: big},
		{TenantID: "no-such-tenant", Role: RTTPatient, SubjectID: "p1", RTTs: map[string]float64{"x": 1}},
	}
	for i, r := range bad {
		if err := s.PutRTTs(ctx, r); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound) {
			t.Errorf("bad report %d: %v, want ErrInvalid or ErrNotFound", i, err)
		}
	}
	if got := must[RTTReport](t)(s.RTTs(ctx, "t1", RTTPatient, "p1", time.Time{})); len(got.RTTs) != 1 || got.RTTs["ap-1"] != 240 {
		t.Fatalf("a refused report changed what is stored: %v", got.RTTs)
	}
	// An empty report removes the subject's RTTs.
	mustOK(t, s.PutRTTs(ctx, RTTReport{TenantID: "t1", Role: RTTPatient, SubjectID: "p1"}))
	if got := must[RTTReport](t)(s.RTTs(ctx, "t1", RTTPatient, "p1", time.Time{})); len(got.RTTs) != 0 {
		t.Fatalf("an empty report left %v", got.RTTs)
	}
}
