package controlserver

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Reads of synced rows pgstore does not offer (yet), run through
// Store.Pool on its schema: the recorded hash of given audit_log entries
// (where a session's chain continues) and given stored messages (the
// config command an applied receipt acknowledges). They belong in pgstore
// eventually; they are kept together here so that move is one file.

// entryKey names one session log entry.
type entryKey struct {
	tenant, session string
	seq             uint64
}

// auditHashes returns the recorded hashes of the audit_log rows named by
// keys that exist.
func (s *Server) auditHashes(ctx context.Context, keys []entryKey) (map[entryKey][]byte, error) {
	out := make(map[entryKey][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ts, ss, qs := splitKeys(keys)
	rows, err := s.st.Pool().Query(ctx, `SELECT a.tenant_id, a.session_id, a.seq, a.hash
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k(tenant_id, session_id, seq)
		JOIN audit_log a USING (tenant_id, session_id, seq)`, ts, ss, qs)
	if err != nil {
		return nil, fmt.Errorf("controlserver: audit heads: %w", err)
	}
	var (
		k    entryKey
		hash []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&k.tenant, &k.session, &k.seq, &hash}, func() error {
		out[k] = append([]byte(nil), hash...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("controlserver: audit heads: %w", err)
	}
	return out, nil
}

// storedMessage is the part of a stored message a config receipt needs.
type storedMessage struct {
	kind    uint16
	payload []byte
}

// messages returns the stored messages named by keys that exist.
func (s *Server) messages(ctx context.Context, keys []entryKey) (map[entryKey]storedMessage, error) {
	out := make(map[entryKey]storedMessage, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ts, ss, qs := splitKeys(keys)
	rows, err := s.st.Pool().Query(ctx, `SELECT m.tenant_id, m.session_id, m.seq, m.kind, m.payload
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k(tenant_id, session_id, seq)
		JOIN messages m USING (tenant_id, session_id, seq)`, ts, ss, qs)
	if err != nil {
		return nil, fmt.Errorf("controlserver: messages: %w", err)
	}
	var (
		k    entryKey
		kind int32
		p    []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&k.tenant, &k.session, &k.seq, &kind, &p}, func() error {
		out[k] = storedMessage{kind: uint16(kind), payload: append([]byte(nil), p...)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("controlserver: messages: %w", err)
	}
	return out, nil
}

func splitKeys(keys []entryKey) (ts, ss []string, qs []int64) {
	ts, ss, qs = make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		ts[i], ss[i], qs[i] = k.tenant, k.session, int64(k.seq)
	}
	return ts, ss, qs
}
