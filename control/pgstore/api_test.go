package pgstore

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestEndSessionAndEndedSessions(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	clinic(t, s, "b")
	mk := func(tenant, id string) {
		t.Helper()
		must[Session](t)(s.CreateSession(ctx, Session{TenantID: tenant, ID: id, ClinicianID: "c1", PatientID: "p1"}))
	}
	mk("a", "s1")
	mk("a", "s2")
	mk("a", "s3")
	mk("b", "s4")
	mk("b", "s1") // the same id in another tenant

	x := must[Session](t)(s.EndSession(ctx, "a", "s1"))
	if x.State != StateEnded || x.EndedAt == nil {
		t.Fatalf("EndSession = %+v, want ended with ended_at", x)
	}
	again := must[Session](t)(s.EndSession(ctx, "a", "s1"))
	if again.State != StateEnded || !again.EndedAt.Equal(*x.EndedAt) {
		t.Fatalf("second EndSession = %+v, want the same ended_at %v", again, x.EndedAt)
	}
	if _, err := s.EndSession(ctx, "a", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("EndSession of an unknown session: %v, want ErrNotFound", err)
	}
	must[Session](t)(s.SetSessionState(ctx, "a", "s2", StateExpired, ""))
	must[Session](t)(s.EndSession(ctx, "b", "s4"))
	if x := must[Session](t)(s.EndSession(ctx, "a", "s2")); x.State != StateExpired {
		t.Fatalf("ending an expired session made it %s, want it left expired", x.State)
	}

	tests := []struct {
		name   string
		tenant string
		ids    []string
		want   []string
	}{
		{"tenant a", "a", []string{"s1", "s2", "s3", "s4", "unknown"}, []string{"s1", "s2"}},
		{"tenant b: s1 runs there", "b", []string{"s1", "s4"}, []string{"s4"}},
		{"every tenant", "", []string{"s1", "s3", "s4"}, []string{"s1", "s4"}},
		{"none", "a", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := must[[]string](t)(s.EndedSessions(ctx, tt.tenant, tt.ids))
			if !slices.Equal(got, tt.want) {
				t.Errorf("EndedSessions(%q, %v) = %v, want %v", tt.tenant, tt.ids, got, tt.want)
			}
		})
	}

	if n := must[int](t)(s.ExpireSessions(ctx, "a", time.Now().Add(time.Hour))); n != 1 {
		t.Errorf("ExpireSessions expired %d, want 1 (s3; s1 ended, s2 expired already)", n)
	}
	if x := must[Session](t)(s.Session(ctx, "a", "s3")); x.State != StateExpired || x.EndedAt == nil {
		t.Errorf("s3 = %+v, want expired", x)
	}
	if x := must[Session](t)(s.Session(ctx, "b", "s1")); x.State != StateCreated {
		t.Errorf("b/s1 = %s, want created (another tenant)", x.State)
	}
}

func TestPushRegistrations(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	p := must[PushRegistration](t)(s.PutPushRegistration(ctx, PushRegistration{TenantID: "a", PatientID: "p1",
		InstallationID: "inst-1", Provider: PushFCM, Token: "fcm-token-1"}))
	if p.CreatedAt.IsZero() || p.Token != "fcm-token-1" {
		t.Fatalf("PutPushRegistration = %+v", p)
	}
	p2 := must[PushRegistration](t)(s.PutPushRegistration(ctx, PushRegistration{TenantID: "a", PatientID: "p1",
		InstallationID: "inst-1", Provider: PushAPNs, Token: "apns-token"}))
	if p2.Provider != PushAPNs || p2.Token != "apns-token" || !p2.CreatedAt.Equal(p.CreatedAt) {
		t.Fatalf("replacing: %+v, want apns with the first created_at", p2)
	}
	must[PushRegistration](t)(s.PutPushRegistration(ctx, PushRegistration{TenantID: "a", PatientID: "p1",
		InstallationID: "inst-2", Provider: PushWebhook, Token: "https://hook.example/x"}))
	if _, err := s.PutPushRegistration(ctx, PushRegistration{TenantID: "a", PatientID: "nobody",
		InstallationID: "i", Provider: PushFCM, Token: "t"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown patient: %v, want ErrNotFound", err)
	}
	if _, err := s.PutPushRegistration(ctx, PushRegistration{TenantID: "a", PatientID: "p1",
		InstallationID: "i", Provider: "pigeon", Token: "t"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown provider: %v, want ErrInvalid", err)
	}
	ps := must[[]PushRegistration](t)(s.PushRegistrations(ctx, "a", "p1"))
	if len(ps) != 2 || ps[0].InstallationID != "inst-1" || ps[1].InstallationID != "inst-2" {
		t.Fatalf("PushRegistrations = %+v", ps)
	}
	mustOK(t, s.DeletePushRegistration(ctx, "a", "p1", "inst-1"))
	if err := s.DeletePushRegistration(ctx, "a", "p1", "inst-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting twice: %v, want ErrNotFound", err)
	}
	if ps := must[[]PushRegistration](t)(s.PushRegistrations(ctx, "a", "p1")); len(ps) != 1 {
		t.Errorf("after delete: %+v", ps)
	}
}

func TestJobs(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	past := time.Now().Add(-time.Minute)
	j := must[Job](t)(s.CreateJob(ctx, Job{TenantID: "a", ID: "j1", Kind: "k", RunAt: past}))
	if j.State != JobPending || string(j.Payload) != "{}" || j.Attempts != 0 {
		t.Fatalf("CreateJob = %+v", j)
	}
	if _, err := s.CreateJob(ctx, Job{TenantID: "a", ID: "j1", Kind: "k", RunAt: past}); !errors.Is(err, ErrExists) {
		t.Errorf("same id: %v, want ErrExists", err)
	}
	if _, err := s.CreateJob(ctx, Job{TenantID: "zz", ID: "j1", Kind: "k", RunAt: past}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown tenant: %v, want ErrNotFound", err)
	}
	must[Job](t)(s.CreateJob(ctx, Job{TenantID: "a", ID: "later", Kind: "k", RunAt: time.Now().Add(time.Hour), Payload: []byte(`{"x": 1}`)}))
	must[Job](t)(s.CreateJob(ctx, Job{TenantID: "a", ID: "j2", Kind: "k", RunAt: past}))

	// Two runners never claim the same job.
	got1 := must[[]Job](t)(s.ClaimJobs(ctx, "r1", time.Minute, 1))
	got2 := must[[]Job](t)(s.ClaimJobs(ctx, "r2", time.Minute, 10))
	if len(got1) != 1 || len(got2) != 1 || got1[0].ID == got2[0].ID || got1[0].State != JobRunning || got1[0].Attempts != 1 {
		t.Fatalf("claims %+v and %+v, want j1 and j2 once each", got1, got2)
	}
	if more := must[[]Job](t)(s.ClaimJobs(ctx, "r3", time.Minute, 10)); len(more) != 0 {
		t.Fatalf("claimed %+v: nothing else is due", more)
	}
	if err := s.FinishJob(ctx, "a", got1[0].ID, "r2", "", time.Time{}); !errors.Is(err, ErrConflict) {
		t.Errorf("finish by a runner that does not hold it: %v, want ErrConflict", err)
	}
	mustOK(t, s.FinishJob(ctx, "a", got1[0].ID, "r1", "", time.Time{}))
	mustOK(t, s.FinishJob(ctx, "a", got2[0].ID, "r2", "boom", past)) // retry now
	if j := must[Job](t)(s.Job(ctx, "a", got2[0].ID)); j.State != JobPending || j.LastError != "boom" || j.LockedBy != "" {
		t.Fatalf("after a failed attempt with retry: %+v", j)
	}
	again := must[[]Job](t)(s.ClaimJobs(ctx, "r1", time.Millisecond, 10))
	if len(again) != 1 || again[0].Attempts != 2 {
		t.Fatalf("retry claim %+v, want attempt 2", again)
	}
	// The lease lapses: another runner reclaims it, and the first one's
	// finish is fenced off.
	time.Sleep(5 * time.Millisecond) // let the 1 ms lease pass on the server's clock
	re := must[[]Job](t)(s.ClaimJobs(ctx, "r2", time.Minute, 10))
	if len(re) != 1 || re[0].ID != again[0].ID || re[0].LockedBy != "r2" {
		t.Fatalf("reclaim %+v, want the lapsed job for r2", re)
	}
	if err := s.FinishJob(ctx, "a", re[0].ID, "r1", "", time.Time{}); !errors.Is(err, ErrConflict) {
		t.Errorf("finish by the runner whose lease lapsed: %v, want ErrConflict", err)
	}
	mustOK(t, s.FinishJob(ctx, "a", re[0].ID, "r2", "boom again", time.Time{}))
	if j := must[Job](t)(s.Job(ctx, "a", re[0].ID)); j.State != JobFailed {
		t.Errorf("failed without retry: %s, want failed", j.State)
	}

	c := must[Job](t)(s.CancelJob(ctx, "a", "later"))
	if c.State != JobCancelled {
		t.Fatalf("CancelJob = %+v", c)
	}
	if c2 := must[Job](t)(s.CancelJob(ctx, "a", "later")); c2.State != JobCancelled {
		t.Fatalf("cancelling twice = %+v", c2)
	}
	if j, err := s.CancelJob(ctx, "a", "j1"); !errors.Is(err, ErrConflict) || j.State != JobDone {
		t.Errorf("cancelling a done job: %+v %v, want ErrConflict with state done", j, err)
	}
	if _, err := s.CancelJob(ctx, "a", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancelling an unknown job: %v, want ErrNotFound", err)
	}
	all := must[[]Job](t)(s.Jobs(ctx, "a", "", 100))
	if len(all) != 3 {
		t.Errorf("Jobs = %d, want 3", len(all))
	}
	if c := must[[]Job](t)(s.Jobs(ctx, "a", JobCancelled, 100)); len(c) != 1 || c[0].ID != "later" || string(c[0].Payload) != `{"x": 1}` {
		t.Errorf("cancelled jobs = %+v", c)
	}
}
