package controlserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stapes-relay/stapes/audit"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/syncproto"
	"github.com/stapes-relay/stapes/relay/wire"
)

// sessionKey names a session.
type sessionKey struct{ tenant, session string }

// chainLink is the last entry of a session seen in a batch.
type chainLink struct {
	seq  uint64
	hash []byte
}

// appliedReceipt is a RECEIPT with stage applied: the message it
// acknowledges may be a config command that advances a device.
type appliedReceipt struct {
	msg entryKey // the acknowledged message
}

// ingest verifies and stores a batch. Every step is idempotent (rows are
// inserted ON CONFLICT DO NOTHING; a config change already recorded from
// the same session message is recognised), so a batch that fails half way
// is simply retried by the relay, and a replayed batch inserts nothing.
// Records are verified and turned into rows while pgstore copies the audit
// rows (SyncRows.More), so that Go's work overlaps with Postgres'. rows
// is empty, its slices' capacity reused.
func (s *Server) ingest(ctx context.Context, n *pgstore.Node, b *syncproto.Batch, rows *pgstore.SyncRows) (*syncAnswer, error) {
	ans := &syncAnswer{AckedPos: b.Pos, Broken: []string{}}
	// syncproto carries no commit time: rows are stamped on arrival.
	v := &verifier{s: s, n: n, b: b, ans: ans, now: s.cfg.Now().UTC(),
		inBatch: map[entryKey]storedMessage{}, chain: map[sessionKey]chainLink{}, broken: map[sessionKey]bool{}}

	// Where each session's chain continues from: the previous record of
	// the batch, or the entry stored in audit_log.
	var need []entryKey
	lastSeq := map[sessionKey]uint64{}
	for i := range b.Records {
		rec := &b.Records[i]
		sk := sessionKey{rec.Tenant, rec.Session}
		if p, ok := lastSeq[sk]; rec.Seq > 1 && (!ok || p != rec.Seq-1) {
			need = append(need, entryKey{rec.Tenant, rec.Session, rec.Seq - 1})
		}
		lastSeq[sk] = rec.Seq
	}
	var err error
	if v.stored, err = s.auditHashes(ctx, need); err != nil {
		return nil, err
	}

	rows.Audit = slices.Grow(rows.Audit, len(b.Records))
	rows.Events = s.eventsOf(ctx, n, b)
	if len(b.Records) > 0 {
		rows.More = func(rows *pgstore.SyncRows) bool { return v.more(ctx, rows) }
	}
	c, err := s.st.IngestSync(ctx, rows)
	if err != nil {
		return nil, err
	}
	ans.Inserted, ans.Messages, ans.Receipts, ans.Events = c.Audit, c.Messages, c.Receipts, c.Events
	s.m.syncRows.WithLabelValues("audit_log").Add(float64(ans.Inserted))
	s.m.syncRows.WithLabelValues("messages").Add(float64(ans.Messages))
	s.m.syncRows.WithLabelValues("receipts").Add(float64(ans.Receipts))
	s.m.syncRows.WithLabelValues("session_events").Add(float64(ans.Events))
	if ans.ConfigConflicts, err = s.advanceConfigs(ctx, v.applied, v.inBatch); err != nil {
		return nil, err
	}
	for _, sk := range v.started {
		// The session's first entry: it is active, on this relay. (A
		// session controld did not create is none of its business.)
		if _, err := s.st.SetSessionState(ctx, sk.tenant, sk.session, pgstore.StateActive, n.ID); err != nil && !errors.Is(err, pgstore.ErrNotFound) {
			return nil, err
		}
	}
	return ans, nil
}

// verifier walks a batch's records in order, verifying each session's
// audit chain and turning each record into rows. It is driven by pgstore
// (SyncRows.More) from the COPY's goroutine, one call at a time; ingest
// reads its results after IngestSync returned.
type verifier struct {
	s      *Server
	n      *pgstore.Node
	b      *syncproto.Batch
	ans    *syncAnswer
	now    time.Time
	stored map[entryKey][]byte // hashes of the entries the batch continues from
	next   int                 // the next record to verify
	check  audit.Checker

	applied []appliedReceipt
	started []sessionKey // sessions whose first entry is in the batch
	inBatch map[entryKey]storedMessage
	chain   map[sessionKey]chainLink
	broken  map[sessionKey]bool
}

// more verifies records until it has appended one audit row (and the
// record's message or receipt, if any) to rows; false when every record
// has been verified.
func (v *verifier) more(ctx context.Context, rows *pgstore.SyncRows) bool {
	for v.next < len(v.b.Records) {
		rec := &v.b.Records[v.next]
		v.next++
		if v.record(ctx, rec, rows) {
			return true
		}
	}
	return false
}

// record verifies rec and appends its rows; false when rec is not stored
// at all (a seq that repeats or goes backwards within the batch).
func (v *verifier) record(ctx context.Context, rec *syncproto.Record, rows *pgstore.SyncRows) bool {
	s, n := v.s, v.n
	sk := sessionKey{rec.Tenant, rec.Session}
	last, seen := v.chain[sk]
	if seen && rec.Seq <= last.seq {
		s.flagBroken(ctx, n, rec, "seq repeats or goes backwards within the batch", v.broken, v.ans)
		return false
	}
	var prev []byte
	switch {
	case rec.Seq == 1:
		prev = audit.Genesis
	case seen && last.seq == rec.Seq-1:
		prev = last.hash
	default:
		prev = v.stored[entryKey{rec.Tenant, rec.Session, rec.Seq - 1}]
	}
	v.chain[sk] = chainLink{rec.Seq, rec.Hash}
	a := pgstore.AuditEntry{TenantID: rec.Tenant, SessionID: rec.Session, Seq: rec.Seq, PrevHash: prev,
		Hash: rec.Hash, Entry: rec.Frame, CreatedAt: v.now}
	if prev == nil {
		a.ChainBroken = true
		s.flagBroken(ctx, n, rec, "the previous entry is not stored (lost, or not synced yet)", v.broken, v.ans)
	} else if !v.check.Check(prev, rec.Session, rec.Seq, rec.Frame, rec.Hash) {
		a.ChainBroken = true
		s.flagBroken(ctx, n, rec, "the recorded hash does not match the entry", v.broken, v.ans)
	}
	rows.Audit = append(rows.Audit, a)
	if a.ChainBroken {
		return true // kept as evidence in audit_log only, never as a valid message or receipt
	}
	if rec.Seq == 1 {
		v.started = append(v.started, sk)
	}
	switch s.appendRow(ctx, n, rec, v.now, rows) {
	case wire.TypeDeliver:
		m := &rows.Messages[len(rows.Messages)-1]
		v.inBatch[entryKey{rec.Tenant, rec.Session, rec.Seq}] = storedMessage{kind: m.Kind, payload: m.Payload}
	case wire.TypeReceipt:
		rc := &rows.Receipts[len(rows.Receipts)-1]
		if wire.Stage(rc.Stage) == wire.StageApplied {
			v.applied = append(v.applied, appliedReceipt{msg: entryKey{rec.Tenant, rec.Session, rc.RefSeq}})
		}
	}
	return true
}

// eventKinds names syncproto's event kinds as session_events stores them.
var eventKinds = map[uint8]string{
	syncproto.EventOpened: "opened", syncproto.EventJoined: "joined", syncproto.EventLeft: "left",
	syncproto.EventEnded: "ended", syncproto.EventTURNUsage: "turn_usage",
}

// eventsOf turns a batch's events into rows; an event of a kind this
// controld does not know is logged and skipped (a newer relay).
func (s *Server) eventsOf(ctx context.Context, n *pgstore.Node, b *syncproto.Batch) []pgstore.SessionEvent {
	var out []pgstore.SessionEvent
	for _, e := range b.Events {
		kind, ok := eventKinds[e.Kind]
		if !ok {
			s.log.WarnContext(ctx, "synced event skipped", "relay", n.ID, "kind", e.Kind, "pos", e.Pos)
			continue
		}
		out = append(out, pgstore.SessionEvent{TenantID: e.Tenant, SessionID: e.Session, Origin: n.ID + "/" + b.Store,
			Pos: e.Pos, RelayID: n.ID, Kind: kind, At: time.UnixMicro(e.At).UTC(), Data: e.Data})
	}
	return out
}

// flagBroken records that rec's chain does not verify.
func (s *Server) flagBroken(ctx context.Context, n *pgstore.Node, rec *syncproto.Record, reason string, broken map[sessionKey]bool, ans *syncAnswer) {
	s.m.syncBroken.Inc()
	s.log.WarnContext(ctx, "audit chain broken: entry flagged, not stored as valid", "relay", n.ID,
		"tenant", rec.Tenant, "session", rec.Session, "seq", rec.Seq, "reason", reason)
	sk := sessionKey{rec.Tenant, rec.Session}
	if !broken[sk] {
		broken[sk] = true
		ans.Broken = append(ans.Broken, rec.Session)
	}
}

// appendRow turns a verified log entry into a message (DELIVER) or a
// receipt (RECEIPT) appended to rows, and returns which. Entries that are
// neither (0) stay in audit_log only, logged without their content.
func (s *Server) appendRow(ctx context.Context, n *pgstore.Node, rec *syncproto.Record, now time.Time, rows *pgstore.SyncRows) wire.Type {
	skip := func(why string) wire.Type {
		s.log.WarnContext(ctx, "synced entry kept in the audit log only", "relay", n.ID, "tenant", rec.Tenant,
			"session", rec.Session, "seq", rec.Seq, "reason", why)
		return 0
	}
	f, err := wire.Decode(rec.Frame, syncproto.MaxFrameLen)
	if err != nil {
		return skip("frame does not decode")
	}
	if f.Sender == "" || !storableID(f.Sender) {
		return skip("frame has no storable sender")
	}
	switch f.Type {
	case wire.TypeDeliver:
		rows.Messages = append(rows.Messages, pgstore.Message{TenantID: rec.Tenant, SessionID: rec.Session, Seq: rec.Seq, Sender: f.Sender,
			Kind: uint16(f.Kind), ClientID: storableText(f.ClientID), Payload: f.Payload, CreatedAt: now})
		return f.Type
	case wire.TypeReceipt:
		if f.RefSeq == 0 || f.Stage == 0 {
			return skip("receipt without ref_seq or stage")
		}
		rows.Receipts = append(rows.Receipts, pgstore.Receipt{TenantID: rec.Tenant, SessionID: rec.Session, Seq: rec.Seq, RefSeq: f.RefSeq,
			Stage: uint8(f.Stage), Reason: storableText(f.Reason), Acker: f.Sender, CreatedAt: now})
		return f.Type
	}
	return skip(fmt.Sprintf("frame type %v is neither DELIVER nor RECEIPT", f.Type))
}

// advanceConfigs advances, in batch order, the device config of every
// applied config command (compare-and-set on its base version, recorded
// with the session message so a replay is recognised). It returns the
// sessions whose command conflicted with Postgres.
func (s *Server) advanceConfigs(ctx context.Context, applied []appliedReceipt, inBatch map[entryKey]storedMessage) ([]string, error) {
	if len(applied) == 0 {
		return nil, nil
	}
	var missing []entryKey
	for _, a := range applied {
		if _, ok := inBatch[a.msg]; !ok {
			missing = append(missing, a.msg)
		}
	}
	earlier, err := s.messages(ctx, missing)
	if err != nil {
		return nil, err
	}
	devices := map[sessionKey]string{}
	var conflicts []string
	for _, a := range applied {
		msg, ok := inBatch[a.msg]
		if !ok {
			msg, ok = earlier[a.msg]
		}
		if !ok {
			s.m.configAdvance.WithLabelValues("skipped").Inc()
			s.log.WarnContext(ctx, "applied receipt for a message controld does not have (broken chain?)",
				"tenant", a.msg.tenant, "session", a.msg.session, "ref_seq", a.msg.seq)
			continue
		}
		if wire.Kind(msg.kind) != wire.KindConfig {
			continue
		}
		cfg, err := wire.DecodeConfig(msg.payload)
		if err != nil {
			s.m.configAdvance.WithLabelValues("skipped").Inc()
			s.log.WarnContext(ctx, "applied config command does not decode", "tenant", a.msg.tenant, "session", a.msg.session, "seq", a.msg.seq)
			continue
		}
		sk := sessionKey{a.msg.tenant, a.msg.session}
		serial, ok := devices[sk]
		if !ok {
			x, err := s.st.Session(ctx, sk.tenant, sk.session)
			switch {
			case errors.Is(err, pgstore.ErrNotFound):
			case err != nil:
				return nil, err
			default:
				serial = x.DeviceSerial
			}
			devices[sk] = serial
		}
		if serial == "" {
			s.m.configAdvance.WithLabelValues("skipped").Inc()
			s.log.WarnContext(ctx, "applied config command in a session controld knows no device of", "tenant", sk.tenant, "session", sk.session, "seq", a.msg.seq)
			continue
		}
		params := make(map[string]int64, len(cfg.Params))
		for _, p := range cfg.Params {
			params[p.Name] = p.Value
		}
		cur, err := s.st.AdvanceDeviceConfig(ctx, pgstore.ConfigChange{TenantID: sk.tenant, Serial: serial, Base: cfg.BaseVersion,
			Params: params, SessionID: sk.session, Seq: a.msg.seq})
		switch {
		case errors.Is(err, pgstore.ErrConflict):
			s.m.configAdvance.WithLabelValues("conflict").Inc()
			s.log.WarnContext(ctx, "applied config command conflicts with the device version in Postgres", "tenant", sk.tenant,
				"session", sk.session, "seq", a.msg.seq, "base", cfg.BaseVersion, "current", cur.Version)
			if !slices.Contains(conflicts, sk.session) {
				conflicts = append(conflicts, sk.session)
			}
		case errors.Is(err, pgstore.ErrNotFound):
			s.m.configAdvance.WithLabelValues("skipped").Inc()
			s.log.WarnContext(ctx, "applied config command for a device that does not exist", "tenant", sk.tenant, "session", sk.session, "seq", a.msg.seq)
		case err != nil:
			return nil, err
		default:
			s.m.configAdvance.WithLabelValues("advanced").Inc()
		}
	}
	return conflicts, nil
}
