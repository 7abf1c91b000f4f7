package controlserver

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/syncproto"
)

// syncAnswer is the answer to a sync batch. control.Syncer reads
// acked_pos; the rest is for operators and tests.
type syncAnswer struct {
	AckedPos uint64 `json:"acked_pos"`
	// Inserted counts the batch's log entries stored for the first time
	// (audit_log rows); a replayed batch inserts 0.
	Inserted int64 `json:"inserted"`
	Messages int64 `json:"messages"`
	Receipts int64 `json:"receipts"`
	// Events counts the batch's session events stored for the first time.
	Events int64 `json:"events"`
	// Broken lists the sessions with an entry whose audit chain did not
	// verify: stored flagged in audit_log, not as a message or receipt.
	Broken []string `json:"broken"`
	// ConfigConflicts lists the sessions with an applied config command
	// whose base was not the device's version in Postgres.
	ConfigConflicts []string `json:"config_conflicts,omitempty"`
}

// sync ingests a relay's sync batch (POST /v1/relay/sync): verify each
// session's audit chain, store messages, receipts and audit rows
// idempotently, advance device configs by applied config receipts, and
// answer acked_pos = the batch's position once all of it is stored.
func (s *Server) sync(w http.ResponseWriter, r *http.Request, n *pgstore.Node) error {
	start := time.Now()
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != syncproto.ContentType {
		s.m.syncBatches.WithLabelValues("rejected").Inc()
		return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be %s", syncproto.ContentType)
	}
	bufs := s.syncBuffers()
	defer s.putSyncBuffers(bufs)
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxSyncBody), r.ContentLength, s.cfg.MaxSyncBody, bufs.body)
	bufs.body = body
	if err != nil {
		s.m.syncBatches.WithLabelValues("rejected").Inc()
		var big *http.MaxBytesError
		if errors.As(err, &big) {
			return errorf(http.StatusRequestEntityTooLarge, "too_large", "the batch is larger than %d bytes; send smaller batches", s.cfg.MaxSyncBody)
		}
		return badRequest("reading the batch failed")
	}
	b, err := syncproto.Decode(body)
	if err != nil {
		s.m.syncBatches.WithLabelValues("rejected").Inc()
		return badRequest("%v", err)
	}
	if err := s.checkBatch(n, &b); err != nil {
		s.m.syncBatches.WithLabelValues("rejected").Inc()
		s.log.WarnContext(r.Context(), "sync batch refused", "relay", n.ID, "err", err, "request_id", requestID(r.Context()))
		return err
	}
	ans, err := s.ingest(r.Context(), n, &b, &bufs.rows)
	if err != nil {
		s.m.syncBatches.WithLabelValues("error").Inc()
		s.log.ErrorContext(r.Context(), "sync batch not stored; the relay will retry", "relay", n.ID, "pos", b.Pos,
			"records", len(b.Records), "err", err, "request_id", requestID(r.Context()))
		return unavailable
	}
	s.m.syncBatches.WithLabelValues("ok").Inc()
	s.m.syncSeconds.Observe(time.Since(start).Seconds())
	s.log.DebugContext(r.Context(), "sync batch stored", "relay", n.ID, "pos", b.Pos, "records", len(b.Records),
		"inserted", ans.Inserted, "broken_sessions", len(ans.Broken))
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// checkBatch refuses batches the relay may not send or Postgres could
// never store (so a retry would fail the same way): another relay's name,
// another tenant's records (for a tenant's own relay), ids that are not
// UTF-8 or contain NUL.
func (s *Server) checkBatch(n *pgstore.Node, b *syncproto.Batch) error {
	if b.Relay != n.ID {
		return forbidden("wrong_relay", "the batch names relay %q but the credential is relay %q's (check --relay-id)", b.Relay, n.ID)
	}
	for i := range b.Records {
		rec := &b.Records[i]
		if n.TenantID != pgstore.SystemTenant && rec.Tenant != n.TenantID {
			return forbidden("wrong_tenant", "record %d belongs to another tenant than this relay's", i)
		}
		if !storableID(rec.Tenant) || !storableID(rec.Session) {
			return badRequest("record %d: tenant or session id is not UTF-8 text without NUL", i)
		}
		if rec.Seq > 1<<63-1 {
			return badRequest("record %d: seq out of range", i)
		}
	}
	if len(b.Events) > 0 && !storableID(b.Store) {
		return badRequest("the store id is not UTF-8 text without NUL")
	}
	for i := range b.Events {
		e := &b.Events[i]
		if n.TenantID != pgstore.SystemTenant && e.Tenant != n.TenantID {
			return forbidden("wrong_tenant", "event %d belongs to another tenant than this relay's", i)
		}
		if !storableID(e.Tenant) || !storableID(e.Session) {
			return badRequest("event %d: tenant or session id is not UTF-8 text without NUL", i)
		}
		if e.Pos > 1<<63-1 {
			return badRequest("event %d: pos out of range", i)
		}
	}
	return nil
}

// storableID reports whether Postgres can store s in a text column.
func storableID(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// storableText makes s storable in a text column: NUL (which Postgres
// refuses) becomes U+FFFD. The exact bytes stay in the audit entry.
func storableText(s string) string {
	if !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// readBody reads a request body into one buffer sized from Content-Length
// (bounded by max), instead of growing it by doubling; buf is reused when
// it is large enough.
func readBody(r io.Reader, length, max int64, buf []byte) ([]byte, error) {
	if length <= 0 || length > max {
		return io.ReadAll(r)
	}
	if int64(cap(buf)) < length {
		buf = make([]byte, length)
	}
	buf = buf[:length]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	// Nothing may follow the announced length.
	var one [1]byte
	if n, _ := r.Read(one[:]); n > 0 {
		return nil, io.ErrUnexpectedEOF
	}
	return buf, nil
}

// syncBuffers are a sync batch's large buffers: its body and its rows.
// Reusing them from batch to batch spares allocating and faulting in
// megabytes per batch. Nothing of a batch outlives its handler: the
// decoded batch and the rows alias the body, and pgstore is done with the
// rows when IngestSync returns.
type syncBuffers struct {
	body []byte
	rows pgstore.SyncRows
}

const (
	// maxPooledBody bounds the body buffers kept for reuse: a rare huge
	// batch does not pin its buffer.
	maxPooledBody = 8 << 20
	// maxIdleSyncBuffers bounds the idle buffers kept: relays syncing at
	// once beyond it allocate theirs.
	maxIdleSyncBuffers = 4
)

func (s *Server) syncBuffers() *syncBuffers {
	select {
	case b := <-s.syncBufs:
		return b
	default:
		return &syncBuffers{}
	}
}

func (s *Server) putSyncBuffers(b *syncBuffers) {
	if cap(b.body) > maxPooledBody {
		return
	}
	// Drop the rows' references (ids, and payloads aliasing the body).
	r := &b.rows
	clear(r.Audit)
	clear(r.Messages)
	clear(r.Receipts)
	*r = pgstore.SyncRows{Audit: r.Audit[:0], Messages: r.Messages[:0], Receipts: r.Receipts[:0]}
	b.body = b.body[:0]
	select {
	case s.syncBufs <- b:
	default:
	}
}
