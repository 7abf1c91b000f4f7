package pgstore

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func messages(tenant, session string, from, to uint64) []Message {
	var ms []Message
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for seq := from; seq <= to; seq++ {
		ms = append(ms, Message{
			TenantID: tenant, SessionID: session, Seq: seq, Sender: "c1", Kind: 1,
			ClientID: fmt.Sprintf("m%d", seq), Payload: []byte(fmt.Sprintf("payload %d", seq)), CreatedAt: at,
		})
	}
	return ms
}

func countRows(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	mustOK(t, s.pool.QueryRow(ctxT(t), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

func TestIngestMessages(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	dup := messages("a", "s1", 300, 300)
	dup = append(dup, dup[0])
	dup[1].Payload = []byte("second copy")
	tests := []struct {
		name string
		rows []Message
		want int64
	}{
		{"empty", nil, 0},
		{"first batch", messages("a", "s1", 1, 100), 100},
		{"replayed batch", messages("a", "s1", 1, 100), 0},
		{"overlapping batch", messages("a", "s1", 51, 150), 50},
		{"other session", messages("a", "s2", 1, 10), 10},
		{"same session id, other tenant", messages("b", "s1", 1, 10), 10},
		{"two sessions, partly stored", append(messages("a", "s2", 5, 15), messages("a", "s3", 1, 5)...), 10},
		{"duplicate within the batch", dup, 1},
	}
	total := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.fallbacks.Load()
			got, err := s.IngestMessages(ctx, tt.rows)
			// Only batches with stored (or repeated) keys leave the fast path.
			if fell := s.fallbacks.Load() > before; fell != (tt.want != int64(len(tt.rows))) {
				t.Errorf("took the idempotent path: %v", fell)
			}
			if err != nil {
				t.Fatalf("IngestMessages: %v", err)
			}
			if got != tt.want {
				t.Errorf("inserted %d, want %d", got, tt.want)
			}
			total += int(tt.want)
			if n := countRows(t, s, "messages"); n != total {
				t.Errorf("%d rows stored, want %d", n, total)
			}
		})
	}
	// Stored as sent; the first copy of a duplicate wins.
	var m Message
	var kind int32
	mustOK(t, s.pool.QueryRow(ctx, `SELECT sender, kind, client_id, payload, created_at FROM messages
		WHERE tenant_id = 'a' AND session_id = 's1' AND seq = 42`).Scan(&m.Sender, &kind, &m.ClientID, &m.Payload, &m.CreatedAt))
	want := messages("a", "s1", 42, 42)[0]
	if m.Sender != want.Sender || uint16(kind) != want.Kind || m.ClientID != want.ClientID || !bytes.Equal(m.Payload, want.Payload) || !m.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("stored %+v kind %d, want %+v", m, kind, want)
	}
	var p []byte
	mustOK(t, s.pool.QueryRow(ctx, "SELECT payload FROM messages WHERE session_id = 's1' AND seq = 300").Scan(&p))
	if string(p) != "payload 300" {
		t.Errorf("duplicate in batch stored %q, want the first copy", p)
	}
}

// TestIngestAtomic: a batch with one bad row stores nothing, and the
// connection stays usable (the staging table is empty again).
func TestIngestAtomic(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	bad := messages("a", "s1", 1, 10)
	bad[7].TenantID = "" // breaks the stapes_id domain
	if _, err := s.IngestMessages(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad batch: %v, want ErrInvalid", err)
	}
	if n := countRows(t, s, "messages"); n != 0 {
		t.Errorf("%d rows of a failed batch stored", n)
	}
	for i := range 3 { // whichever pooled connection is used
		want := int64(0)
		if i == 0 {
			want = 10
		}
		if got := must[int64](t)(s.IngestMessages(ctx, messages("a", "s1", 1, 10))); got != want {
			t.Errorf("batch %d after a failed one: inserted %d, want %d", i, got, want)
		}
	}
	if n := countRows(t, s, "messages"); n != 10 {
		t.Errorf("%d rows, want 10", n)
	}
}

func TestIngestReceipts(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	rs := func(from, to uint64) []Receipt {
		var out []Receipt
		for seq := from; seq <= to; seq++ {
			out = append(out, Receipt{TenantID: "a", SessionID: "s1", Seq: seq, RefSeq: seq - 1, Stage: 2, Acker: "p1", CreatedAt: time.Now()})
		}
		return out
	}
	for _, tt := range []struct {
		name     string
		from, to uint64
		want     int64
	}{{"first", 2, 21, 20}, {"replay", 2, 21, 0}, {"overlap", 12, 31, 10}} {
		if got := must[int64](t)(s.IngestReceipts(ctx, rs(tt.from, tt.to))); got != tt.want {
			t.Errorf("%s: inserted %d, want %d", tt.name, got, tt.want)
		}
	}
	bad := rs(40, 40)
	bad[0].Stage = 0
	if _, err := s.IngestReceipts(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("stage 0: %v, want ErrInvalid", err)
	}
	if n := countRows(t, s, "receipts"); n != 30 {
		t.Errorf("%d receipts stored, want 30", n)
	}
}

func TestIngestAudit(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	as := func(from, to uint64, broken uint64) []AuditEntry {
		var out []AuditEntry
		for seq := from; seq <= to; seq++ {
			out = append(out, AuditEntry{
				TenantID: "a", SessionID: "s1", Seq: seq,
				PrevHash: []byte{byte(seq - 1)}, Hash: []byte{byte(seq)}, Entry: []byte("entry"),
				ChainBroken: seq == broken, CreatedAt: time.Now(),
			})
		}
		return out
	}
	if got := must[int64](t)(s.IngestAudit(ctx, as(1, 10, 7))); got != 10 {
		t.Errorf("inserted %d, want 10", got)
	}
	// A replay does not clear (or set) the flag of stored entries.
	if got := must[int64](t)(s.IngestAudit(ctx, as(5, 15, 0))); got != 5 {
		t.Errorf("overlap inserted %d, want 5", got)
	}
	var broken []int64
	rows, err := s.pool.Query(ctx, "SELECT seq FROM audit_log WHERE chain_broken ORDER BY seq")
	mustOK(t, err)
	for rows.Next() {
		var v int64
		mustOK(t, rows.Scan(&v))
		broken = append(broken, v)
	}
	mustOK(t, rows.Err())
	if len(broken) != 1 || broken[0] != 7 {
		t.Errorf("broken entries %v, want [7]", broken)
	}
}

// TestIngestSyncOneTransaction: a sync batch is stored whole or not at
// all, a replay inserts nothing, an overlap inserts only the new rows,
// and events move the session's state once.
func TestIngestSyncOneTransaction(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	clinic(t, s, "a")
	must[Session](t)(s.CreateSession(ctx, Session{TenantID: "a", ID: "s1", ClinicianID: "c1", PatientID: "p1"}))
	at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	rowsFor := func(from, to uint64) *SyncRows {
		r := &SyncRows{Messages: messages("a", "s1", from, to)}
		for seq := from; seq <= to; seq++ {
			r.Audit = append(r.Audit, AuditEntry{TenantID: "a", SessionID: "s1", Seq: seq, PrevHash: []byte{1}, Hash: []byte{2}, Entry: []byte("e"), CreatedAt: at})
			r.Receipts = append(r.Receipts, Receipt{TenantID: "a", SessionID: "s1", Seq: seq + 1000, RefSeq: seq, Stage: 1, Acker: "p1", CreatedAt: at})
		}
		return r
	}
	ev := func(pos uint64, kind string, at time.Time, data string) SessionEvent {
		return SessionEvent{TenantID: "a", SessionID: "s1", Origin: "relay-1/st1", Pos: pos, RelayID: "relay-1", Kind: kind, At: at, Data: []byte(data)}
	}
	first := rowsFor(1, 10)
	first.Events = []SessionEvent{ev(1, "opened", at, `{"relay":"relay-1"}`), ev(2, "joined", at, `{"subject":"c1","role":"clinician"}`)}
	if c := must[SyncCounts](t)(s.IngestSync(ctx, first)); c != (SyncCounts{Audit: 10, Messages: 10, Receipts: 10, Events: 2}) {
		t.Fatalf("first batch: %+v", c)
	}
	if x := must[Session](t)(s.Session(ctx, "a", "s1")); x.State != StateActive || x.RelayNodeID != "relay-1" {
		t.Fatalf("after opened: %+v", x)
	}
	if c := must[SyncCounts](t)(s.IngestSync(ctx, first)); c != (SyncCounts{}) {
		t.Fatalf("replay inserted %+v, want nothing", c)
	}
	// A batch with one bad receipt stores nothing, not even its good rows.
	bad := rowsFor(11, 20)
	bad.Receipts[5].Stage = 0
	bad.Events = []SessionEvent{ev(3, "ended", at.Add(time.Minute), `not json`)}
	if _, err := s.IngestSync(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad batch: %v, want ErrInvalid", err)
	}
	for table, want := range map[string]int{"messages": 10, "audit_log": 10, "receipts": 10, "session_events": 2} {
		if n := countRows(t, s, table); n != want {
			t.Errorf("after the refused batch, %s has %d rows, want %d", table, n, want)
		}
	}
	if x := must[Session](t)(s.Session(ctx, "a", "s1")); x.State != StateActive {
		t.Fatalf("the refused batch's ended event took effect: %+v", x)
	}
	// Overlapping batch (5..20) with the ended event: only new rows.
	over := rowsFor(5, 20)
	over.Events = []SessionEvent{ev(2, "joined", at, `{}`), ev(3, "ended", at.Add(time.Minute), `not json`)}
	if c := must[SyncCounts](t)(s.IngestSync(ctx, over)); c != (SyncCounts{Audit: 10, Messages: 10, Receipts: 10, Events: 1}) {
		t.Fatalf("overlap: %+v", c)
	}
	x := must[Session](t)(s.Session(ctx, "a", "s1"))
	if x.State != StateEnded || x.EndedAt == nil || !x.EndedAt.Equal(at.Add(time.Minute)) {
		t.Fatalf("after ended: %+v", x)
	}
	var data string
	mustOK(t, s.pool.QueryRow(ctx, `SELECT data::text FROM session_events WHERE pos = 3`).Scan(&data))
	if data != "{}" {
		t.Errorf("invalid JSON stored as %q, want {}", data)
	}
	// A late "opened" (replayed from another store) does not revive it.
	late := &SyncRows{Events: []SessionEvent{{TenantID: "a", SessionID: "s1", Origin: "relay-2/st9", Pos: 1, RelayID: "relay-2", Kind: "opened", At: at}}}
	must[SyncCounts](t)(s.IngestSync(ctx, late))
	if x := must[Session](t)(s.Session(ctx, "a", "s1")); x.State != StateEnded || x.RelayNodeID != "relay-1" {
		t.Fatalf("a late opened event changed an ended session: %+v", x)
	}
}

// lazyRows is a lazy SyncRows over want: More appends one audit row and
// one message per call and counts its calls.
type lazyRows struct {
	want        *SyncRows
	calls, done int
}

func (l *lazyRows) rows() *SyncRows {
	return &SyncRows{More: func(r *SyncRows) bool {
		l.calls++
		if l.done > 0 {
			l.done++ // called again after it said there was no more
			return false
		}
		i := len(r.Audit)
		if i == len(l.want.Audit) {
			l.done = 1
			return false
		}
		r.Audit = append(r.Audit, l.want.Audit[i])
		r.Messages = append(r.Messages, l.want.Messages[i])
		return true
	}}
}

func TestIngestSyncLazy(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	rowsFor := func(from, to uint64) *SyncRows {
		r := &SyncRows{Messages: messages("a", "s1", from, to)}
		for seq := from; seq <= to; seq++ {
			r.Audit = append(r.Audit, AuditEntry{TenantID: "a", SessionID: "s1", Seq: seq, PrevHash: []byte{1}, Hash: []byte{2}, Entry: []byte("e"), CreatedAt: at})
		}
		return r
	}
	tests := []struct {
		name     string
		rows     *SyncRows
		want     int64
		fallback bool
	}{
		{"fresh", rowsFor(1, 3000), 3000, false},
		{"replayed: the fast path fails after some rows", rowsFor(1, 3000), 0, true},
		{"overlapping", rowsFor(2001, 5000), 2000, true},
		{"nothing at all", rowsFor(1, 0), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &lazyRows{want: tt.rows}
			before := s.fallbacks.Load()
			c, err := s.IngestSync(ctx, l.rows())
			if err != nil {
				t.Fatalf("IngestSync: %v", err)
			}
			if got, want := c, (SyncCounts{Audit: tt.want, Messages: tt.want}); got != want {
				t.Errorf("counts: got %+v, want %+v", got, want)
			}
			if fell := s.fallbacks.Load() > before; fell != tt.fallback {
				t.Errorf("took the idempotent path: got %v, want %v", fell, tt.fallback)
			}
			if got, want := l.calls, len(tt.rows.Audit)+1; got != want || l.done != 1 {
				t.Errorf("More called %d times (%d after false), want %d (once after the last row)", got, l.done-1, want)
			}
		})
	}
	if got, want := countRows(t, s, "audit_log"), 5000; got != want {
		t.Errorf("audit_log: got %d rows, want %d", got, want)
	}
	if got, want := countRows(t, s, "messages"), 5000; got != want {
		t.Errorf("messages: got %d rows, want %d", got, want)
	}
}

// TestIngestSyncValues reads every column back: the COPY stream is
// encoded by hand (copy.go).
func TestIngestSyncValues(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t)
	at := time.Date(2026, 11, 23, 9, 1, 2, 345678000, time.FixedZone("x", 3600))
	old := time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC) // before timestamptz's zero
	rows := &SyncRows{
		Audit: []AuditEntry{
			{TenantID: "tenant-ü", SessionID: "s1", Seq: 1, PrevHash: []byte{0, 1, 2}, Hash: []byte{0xff}, Entry: []byte("entry"), CreatedAt: at},
			{TenantID: "tenant-ü", SessionID: "s1", Seq: 1<<63 - 1, PrevHash: nil, Hash: []byte{}, Entry: nil, ChainBroken: true, CreatedAt: old},
		},
		Messages: []Message{{TenantID: "tenant-ü", SessionID: "s1", Seq: 1, Sender: "c1", Kind: 65535, ClientID: "m-1 ✓", Payload: nil, CreatedAt: at}},
		Receipts: []Receipt{{TenantID: "tenant-ü", SessionID: "s1", Seq: 2, RefSeq: 1, Stage: 255, Reason: "", Acker: "p1", CreatedAt: old}},
	}
	if c := must[SyncCounts](t)(s.IngestSync(ctx, rows)); c != (SyncCounts{Audit: 2, Messages: 1, Receipts: 1}) {
		t.Fatalf("counts: %+v", c)
	}
	for i, want := range rows.Audit {
		var got AuditEntry
		mustOK(t, s.pool.QueryRow(ctx, `SELECT tenant_id, session_id, seq, prev_hash, hash, entry, chain_broken, created_at
			FROM audit_log WHERE seq = $1`, int64(want.Seq)).Scan(&got.TenantID, &got.SessionID, &got.Seq, &got.PrevHash, &got.Hash,
			&got.Entry, &got.ChainBroken, &got.CreatedAt))
		if got.TenantID != want.TenantID || got.SessionID != want.SessionID || got.Seq != want.Seq ||
			!bytes.Equal(got.PrevHash, want.PrevHash) || !bytes.Equal(got.Hash, want.Hash) || !bytes.Equal(got.Entry, want.Entry) ||
			got.ChainBroken != want.ChainBroken || !got.CreatedAt.Equal(want.CreatedAt) || got.Entry == nil {
			t.Errorf("audit %d: got %+v, want %+v", i, got, want)
		}
	}
	var m Message
	mustOK(t, s.pool.QueryRow(ctx, `SELECT tenant_id, session_id, seq, sender, kind, client_id, payload, created_at FROM messages`).Scan(
		&m.TenantID, &m.SessionID, &m.Seq, &m.Sender, &m.Kind, &m.ClientID, &m.Payload, &m.CreatedAt))
	if want := rows.Messages[0]; m.TenantID != want.TenantID || m.Seq != 1 || m.Sender != "c1" || m.Kind != 65535 || m.ClientID != want.ClientID ||
		m.Payload == nil || len(m.Payload) != 0 || !m.CreatedAt.Equal(at) {
		t.Errorf("message: got %+v, want %+v", m, want)
	}
	var r Receipt
	mustOK(t, s.pool.QueryRow(ctx, `SELECT tenant_id, session_id, seq, ref_seq, stage, reason, acker, created_at FROM receipts`).Scan(
		&r.TenantID, &r.SessionID, &r.Seq, &r.RefSeq, &r.Stage, &r.Reason, &r.Acker, &r.CreatedAt))
	want := rows.Receipts[0]
	if !r.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("receipt created_at: got %v, want %v", r.CreatedAt, want.CreatedAt)
	}
	if r.CreatedAt = want.CreatedAt; r != want {
		t.Errorf("receipt: got %+v, want %+v", r, want)
	}
}
