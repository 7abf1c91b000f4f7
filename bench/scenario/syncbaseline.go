package scenario

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/control/syncproto"
)

// syncTable is one table the sync fills: the columns controld COPYs and
// the same columns as read back (ids cast from their domain to text).
type syncTable struct {
	name string
	cols []string
	sel  string
}

// syncTables in the order controld ingests them.
var syncTables = []syncTable{
	{"audit_log", []string{"tenant_id", "session_id", "seq", "prev_hash", "hash", "entry", "chain_broken", "created_at"},
		"tenant_id::text, session_id::text, seq, prev_hash, hash, entry, chain_broken, created_at"},
	{"messages", []string{"tenant_id", "session_id", "seq", "sender", "kind", "client_id", "payload", "created_at"},
		"tenant_id::text, session_id::text, seq, sender::text, kind, client_id, payload, created_at"},
	{"receipts", []string{"tenant_id", "session_id", "seq", "ref_seq", "stage", "reason", "acker", "created_at"},
		"tenant_id::text, session_id::text, seq, ref_seq, stage, reason, acker::text, created_at"},
}

// readBack reads the rows the sync stored for sessions, per table, by
// (session, seq).
func readBack(ctx context.Context, s *syncStack, sessions []string) ([]map[recKey][]any, error) {
	out := make([]map[recKey][]any, len(syncTables))
	for i, t := range syncTables {
		out[i] = map[recKey][]any{}
		rows, err := s.st.Pool().Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE tenant_id = 'bench' AND session_id = ANY($1)",
			t.sel, t.name), sessions)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				rows.Close()
				return nil, err
			}
			session, _ := v[1].(string)
			seq, _ := v[2].(int64)
			out[i][recKey{session, uint64(seq)}] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// copyBaseline is the baseline of the rows/s goal: the rows the sync
// stored for sessions, read back, then written with plain pgx CopyFrom
// into raw_<table> (same columns, key and indexes; no staging, no
// conflict handling) on the same pool, in the same batches and the same
// row order as the sync's (per batch one COPY per table, in controld's
// order), one batch after the other.
func copyBaseline(ctx context.Context, s *syncStack, sessions []string, batches []tappedBatch) (map[string]float64, error) {
	stored, err := readBack(ctx, s, sessions)
	if err != nil {
		return nil, err
	}
	// Every batch's rows, table by table, in the batch's record order.
	plan := make([][][][]any, len(batches))
	for bi, b := range batches {
		dec, err := syncproto.Decode(b.body)
		if err != nil {
			return nil, err
		}
		plan[bi] = make([][][]any, len(syncTables))
		for _, r := range dec.Records {
			k := recKey{r.Session, r.Seq}
			for ti := range syncTables {
				if v, ok := stored[ti][k]; ok {
					plan[bi][ti] = append(plan[bi][ti], v)
				}
			}
		}
	}
	h := bench.NewHistogram()
	var total int64
	u := bench.StartUsage(s.procs()...)
	start := time.Now()
	for _, tables := range plan {
		t0 := time.Now()
		for ti, rows := range tables {
			if len(rows) == 0 {
				continue
			}
			t := syncTables[ti]
			n, err := s.st.Pool().CopyFrom(ctx, pgx.Identifier{"raw_" + t.name}, t.cols, pgx.CopyFromRows(rows))
			if err != nil {
				return nil, fmt.Errorf("scenario: baseline CopyFrom %s: %w", t.name, err)
			}
			total += n
		}
		h.Record(time.Since(t0))
	}
	wall := time.Since(start)
	var want int64
	for _, b := range batches {
		want += b.ans.rows()
	}
	if total != want {
		return nil, fmt.Errorf("scenario: baseline copied %d rows, the sync stored %d", total, want)
	}
	m := h.Percentiles().Metrics("")
	maps.Copy(m, u.Metrics(int(total)))
	m["throughput_per_s"] = float64(total) / wall.Seconds()
	m["rows"] = float64(total)
	m["batches"] = float64(len(batches))
	return m, nil
}

// storedRows counts the rows of sessions in Postgres: audit entries that
// verified, messages and receipts.
func storedRows(ctx context.Context, s *syncStack, sessions []string) (int64, error) {
	var n int64
	err := s.st.Pool().QueryRow(ctx, `SELECT
		(SELECT count(*) FROM audit_log WHERE tenant_id = 'bench' AND session_id = ANY($1) AND NOT chain_broken) +
		(SELECT count(*) FROM messages WHERE tenant_id = 'bench' AND session_id = ANY($1)) +
		(SELECT count(*) FROM receipts WHERE tenant_id = 'bench' AND session_id = ANY($1))`, sessions).Scan(&n)
	return n, err
}
