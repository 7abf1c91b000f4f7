package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Message is one durable session message as a relay syncs it.
type Message struct {
	TenantID  string
	SessionID string
	Seq       uint64 // per-session sequence number, from 1
	Sender    string // the sending participant's subject id
	Kind      uint16 // wire.Kind
	ClientID  string // the sender's message id (idempotency key); may be empty
	Payload   []byte // PHI possible: never logged
	CreatedAt time.Time
}

// Receipt is one acknowledgement stage of a message.
type Receipt struct {
	TenantID  string
	SessionID string
	Seq       uint64 // position of the ACK in the session log
	RefSeq    uint64 // the message acknowledged
	Stage     uint8  // wire.Stage: 1 received, 2 applied, 3 rejected
	Reason    string // why, for rejected
	Acker     string // the acknowledging participant's subject id
	CreatedAt time.Time
}

// AuditEntry is one link of a session's audit hash chain.
type AuditEntry struct {
	TenantID  string
	SessionID string
	Seq       uint64
	PrevHash  []byte
	Hash      []byte
	Entry     []byte // PHI possible: never logged
	// ChainBroken is set by the caller when the entry does not chain to its
	// predecessor; such entries are stored flagged, never dropped.
	ChainBroken bool
	CreatedAt   time.Time
}

// The staging tables are temporary (session-local, not WAL-logged) and
// emptied at every commit. Each pooled connection creates its own when it
// connects, so a batch costs no DDL. Types are plain: the target tables'
// domains and checks apply on the INSERT.
const stagingDDL = `
CREATE TEMP TABLE stage_messages (
    tenant_id text, session_id text, seq bigint, sender text, kind integer,
    client_id text, payload bytea, created_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_receipts (
    tenant_id text, session_id text, seq bigint, ref_seq bigint, stage smallint,
    reason text, acker text, created_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_audit (
    tenant_id text, session_id text, seq bigint, prev_hash bytea, hash bytea,
    entry bytea, chain_broken boolean, created_at timestamptz
) ON COMMIT DELETE ROWS;
`

func createStaging(ctx context.Context, c *pgx.Conn) error {
	_, err := c.PgConn().Exec(ctx, stagingDDL).ReadAll()
	return err
}

// batch describes the ingest of one kind of row.
type batch struct {
	target pgx.Identifier
	stage  pgx.Identifier
	cols   []string
	insert string

	copyTarget, copyStage string // COPY statements, set by init
}

func init() {
	for _, b := range []*batch{&messageBatch, &receiptBatch, &auditBatch} {
		b.copyTarget, b.copyStage = copySQL(b.target, b.cols), copySQL(b.stage, b.cols)
	}
}

var (
	messageBatch = batch{
		target: pgx.Identifier{"public", "messages"},
		stage:  pgx.Identifier{"pg_temp", "stage_messages"},
		cols:   []string{"tenant_id", "session_id", "seq", "sender", "kind", "client_id", "payload", "created_at"},
		insert: `INSERT INTO messages (tenant_id, session_id, seq, sender, kind, client_id, payload, created_at)
			SELECT tenant_id, session_id, seq, sender, kind, client_id, payload, created_at
			FROM pg_temp.stage_messages ORDER BY tenant_id, session_id, seq
			ON CONFLICT DO NOTHING`,
	}
	receiptBatch = batch{
		target: pgx.Identifier{"public", "receipts"},
		stage:  pgx.Identifier{"pg_temp", "stage_receipts"},
		cols:   []string{"tenant_id", "session_id", "seq", "ref_seq", "stage", "reason", "acker", "created_at"},
		insert: `INSERT INTO receipts (tenant_id, session_id, seq, ref_seq, stage, reason, acker, created_at)
			SELECT tenant_id, session_id, seq, ref_seq, stage, reason, acker, created_at
			FROM pg_temp.stage_receipts ORDER BY tenant_id, session_id, seq
			ON CONFLICT DO NOTHING`,
	}
	auditBatch = batch{
		target: pgx.Identifier{"public", "audit_log"},
		stage:  pgx.Identifier{"pg_temp", "stage_audit"},
		cols:   []string{"tenant_id", "session_id", "seq", "prev_hash", "hash", "entry", "chain_broken", "created_at"},
		insert: `INSERT INTO audit_log (tenant_id, session_id, seq, prev_hash, hash, entry, chain_broken, created_at)
			SELECT tenant_id, session_id, seq, prev_hash, hash, entry, chain_broken, created_at
			FROM pg_temp.stage_audit ORDER BY tenant_id, session_id, seq
			ON CONFLICT DO NOTHING`,
	}
)

// SessionEvent is one lifecycle or usage event of a session, as a relay
// syncs it.
type SessionEvent struct {
	TenantID  string
	SessionID string
	Origin    string // relay node id "/" relay store id
	Pos       uint64 // the relay's outbox position
	RelayID   string
	Kind      string // opened, joined, left, ended, turn_usage
	At        time.Time
	Data      []byte // a JSON object; nil or invalid JSON stores {}
}

// SyncRows is everything one relay sync batch stores.
type SyncRows struct {
	Audit    []AuditEntry
	Messages []Message
	Receipts []Receipt
	Events   []SessionEvent
	// More, when set, makes the batch lazy, so that building rows overlaps
	// with Postgres storing them: IngestSync calls it while it copies the
	// audit rows, whenever every row of Audit has been copied, to append
	// more. It may append to Messages and Receipts too; those are read only
	// after More returned false (no more rows). More is called on the COPY's
	// goroutine, never concurrently with itself, never after IngestSync
	// returned and never again after it returned false: a retried
	// transaction copies the rows already appended, then asks for more.
	More func(*SyncRows) bool
}

// SyncCounts says how many rows of a SyncRows were new.
type SyncCounts struct {
	Audit, Messages, Receipts, Events int64
}

// IngestSync stores a sync batch idempotently in ONE transaction: either
// every row of it is stored (the new ones inserted, the ones already
// there skipped) or none is. Fast path: plain COPYs into the target
// tables; when any key is already stored (a replayed or overlapping batch)
// the transaction is rolled back and the batch takes the idempotent path:
// COPY into the staging tables and INSERT … ON CONFLICT DO NOTHING, in one
// transaction again. Events are few and go through INSERT … ON CONFLICT
// either way. "opened" and "ended" events also move the session's state
// (a session already over stays over; ended_at is the relay's time).
func (s *Store) IngestSync(ctx context.Context, rows *SyncRows) (SyncCounts, error) {
	var c SyncCounts
	if len(rows.Audit)+len(rows.Messages)+len(rows.Receipts)+len(rows.Events) == 0 && rows.More == nil {
		return c, nil
	}
	srcs := syncSources(rows)
	c, err := s.ingestTx(ctx, srcs, rows.Events, false)
	if err == nil {
		return c, nil
	}
	if !alreadyStored(err) {
		return SyncCounts{}, wrap("ingest sync batch", err)
	}
	s.fallbacks.Add(1)
	s.log.Debug("batch overlaps stored rows; taking the idempotent path", "audit", len(rows.Audit), "messages", len(rows.Messages), "receipts", len(rows.Receipts))
	if c, err = s.ingestTx(ctx, srcs, rows.Events, true); err != nil {
		return SyncCounts{}, wrap("ingest sync batch", err)
	}
	return c, nil
}

// ingestTx stores a batch in one transaction: each source by a plain
// COPY into its target table, or (staged) by COPY into its staging table
// and INSERT … ON CONFLICT DO NOTHING; then the events.
func (s *Store) ingestTx(ctx context.Context, srcs []*rowSource, events []SessionEvent, staged bool) (SyncCounts, error) {
	var c SyncCounts
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for i, src := range srcs {
			if src.empty() {
				continue
			}
			src.i = -1
			if !staged {
				tag, err := tx.Conn().PgConn().CopyFrom(ctx, &copyReader{src: src}, src.b.copyTarget)
				if err != nil {
					return err
				}
				*c.field(i) = tag.RowsAffected()
				continue
			}
			if _, err := tx.Conn().PgConn().CopyFrom(ctx, &copyReader{src: src}, src.b.copyStage); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, src.b.insert)
			if err != nil {
				return err
			}
			*c.field(i) = tag.RowsAffected()
		}
		var err error
		c.Events, err = insertEvents(ctx, tx, events)
		return err
	})
	return c, err
}

func (c *SyncCounts) field(i int) *int64 {
	return [...]*int64{&c.Audit, &c.Messages, &c.Receipts}[i]
}

// syncSources returns the row sources of a batch's audit, messages and
// receipts, in that order (SyncCounts.field's). Only the audit source
// grows while it is copied (rows.More); the others are read after it.
func syncSources(rows *SyncRows) []*rowSource {
	audit := newRowSource(&auditBatch, func() int { return len(rows.Audit) }, func(dst []byte, i int) []byte {
		r := &rows.Audit[i]
		dst = appendText(dst, r.TenantID)
		dst = appendText(dst, r.SessionID)
		dst = appendInt8(dst, int64(r.Seq))
		dst = appendBytea(dst, r.PrevHash)
		dst = appendBytea(dst, r.Hash)
		dst = appendBytea(dst, r.Entry)
		dst = appendBool(dst, r.ChainBroken)
		return appendTimestamptz(dst, r.CreatedAt)
	})
	if rows.More != nil {
		audit.more = func() bool { return rows.More(rows) }
	}
	return []*rowSource{
		audit,
		newRowSource(&messageBatch, func() int { return len(rows.Messages) }, func(dst []byte, i int) []byte {
			r := &rows.Messages[i]
			dst = appendText(dst, r.TenantID)
			dst = appendText(dst, r.SessionID)
			dst = appendInt8(dst, int64(r.Seq))
			dst = appendText(dst, r.Sender)
			dst = appendInt4(dst, int32(r.Kind))
			dst = appendText(dst, r.ClientID)
			dst = appendBytea(dst, r.Payload)
			return appendTimestamptz(dst, r.CreatedAt)
		}),
		newRowSource(&receiptBatch, func() int { return len(rows.Receipts) }, func(dst []byte, i int) []byte {
			r := &rows.Receipts[i]
			dst = appendText(dst, r.TenantID)
			dst = appendText(dst, r.SessionID)
			dst = appendInt8(dst, int64(r.Seq))
			dst = appendInt8(dst, int64(r.RefSeq))
			dst = appendInt2(dst, int16(r.Stage))
			dst = appendText(dst, r.Reason)
			dst = appendText(dst, r.Acker)
			return appendTimestamptz(dst, r.CreatedAt)
		}),
	}
}

// insertEvents stores events ON CONFLICT DO NOTHING and applies the new
// ones' effect on their sessions.
func insertEvents(ctx context.Context, tx pgx.Tx, evs []SessionEvent) (int64, error) {
	var n int64
	for i := range evs {
		e := &evs[i]
		data := e.Data
		if !json.Valid(data) || len(data) == 0 || data[0] != '{' {
			data = []byte("{}")
		}
		tag, err := tx.Exec(ctx, `INSERT INTO session_events (tenant_id, session_id, origin, pos, relay_node_id, kind, at, data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			e.TenantID, e.SessionID, e.Origin, int64(e.Pos), e.RelayID, e.Kind, e.At, string(data))
		if err != nil {
			return 0, err
		}
		if tag.RowsAffected() == 0 {
			continue // replayed: its effect was applied with it
		}
		n++
		switch e.Kind {
		case "opened":
			_, err = tx.Exec(ctx, `UPDATE fitting_sessions SET state = CASE WHEN state = 'created' THEN 'active' ELSE state END,
				relay_node_id = $3 WHERE tenant_id = $1 AND session_id = $2 AND state NOT IN ('ended', 'expired')`, e.TenantID, e.SessionID, e.RelayID)
		case "ended":
			_, err = tx.Exec(ctx, `UPDATE fitting_sessions SET state = 'ended', ended_at = coalesce(ended_at, $3)
				WHERE tenant_id = $1 AND session_id = $2 AND state NOT IN ('ended', 'expired')`, e.TenantID, e.SessionID, e.At)
		}
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// IngestMessages stores a batch of messages idempotently, in one
// transaction, keyed by (tenant_id, session_id, seq), as IngestSync does.
// It returns how many rows were new; rows already stored (a replayed or
// overlapping batch, or a duplicate within the batch) are skipped, the
// first copy wins. A row that breaks the schema (an empty id, …) fails
// the whole batch: nothing is stored.
func (s *Store) IngestMessages(ctx context.Context, rows []Message) (int64, error) {
	c, err := s.IngestSync(ctx, &SyncRows{Messages: rows})
	return c.Messages, err
}

// IngestReceipts stores a batch of receipts like IngestMessages.
func (s *Store) IngestReceipts(ctx context.Context, rows []Receipt) (int64, error) {
	c, err := s.IngestSync(ctx, &SyncRows{Receipts: rows})
	return c.Receipts, err
}

// IngestAudit stores a batch of audit entries like IngestMessages. An
// entry already stored is not replaced, flag included.
func (s *Store) IngestAudit(ctx context.Context, rows []AuditEntry) (int64, error) {
	c, err := s.IngestSync(ctx, &SyncRows{Audit: rows})
	return c.Audit, err
}

// alreadyStored reports whether a fast-path COPY failed because a key was
// taken (or deadlocked with another batch taking the same keys).
func alreadyStored(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == codeUniqueViolation || pe.Code == codeDeadlockDetected)
}

// rowSource yields the rows of one table for a COPY (copyReader encodes
// them). With more it is lazy: Next asks more for rows when it has run
// out, until more returns false; it then stays done across transactions.
type rowSource struct {
	b    *batch
	i    int
	n    func() int                     // rows available now
	more func() bool                    // appends rows; nil when there are no more
	row  func(dst []byte, i int) []byte // appends row i's fields
}

func newRowSource(b *batch, n func() int, row func(dst []byte, i int) []byte) *rowSource {
	return &rowSource{b: b, n: n, i: -1, row: row}
}

// empty reports whether the source has no row and will have none.
func (r *rowSource) empty() bool { return r.n() == 0 && r.more == nil }

func (r *rowSource) Next() bool {
	r.i++
	for r.i >= r.n() {
		if r.more == nil || !r.more() {
			r.more = nil
			return false
		}
	}
	return true
}
