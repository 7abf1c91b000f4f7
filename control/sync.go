package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control/syncproto"
	"github.com/stapes-relay/stapes/storage"
)

// Outbox is what the syncer reads: *storage.Store implements it. Its
// methods are safe for concurrent use with commits.
type Outbox interface {
	ReadOutbox(ctx context.Context, after uint64, limit int, fn func(storage.OutboxRecord) error) error
	AckOutbox(ctx context.Context, pos uint64) error
	OutboxAcked() uint64
	OutboxStable() uint64
	ReadChain(ctx context.Context, session string, after, upto uint64, limit int, fn func(seq uint64, hash, frame []byte) error) error
	Meta(ctx context.Context, name string) ([]byte, bool, error)
	// ID names the store: outbox positions restart with a new store.
	ID() string
}

var _ Outbox = (*storage.Store)(nil)

// SyncConfig configures a Syncer. Zero fields take the defaults in their
// comments.
type SyncConfig struct {
	// Outbox to ship. Required.
	Outbox Outbox
	// Relay is this node's id. Required.
	Relay string
	// URL is controld's base URL (https://host:port). Required.
	URL string
	// Credential is the node credential, sent as a bearer token. Required.
	Credential string
	// HTTPClient, default a client with a 30 s timeout.
	HTTPClient *http.Client
	// MaxRecords bounds records per batch. Default 5000.
	MaxRecords int
	// Interval is how often an idle syncer looks for new records. Default 100 ms.
	Interval time.Duration
	// BackoffMin and BackoffMax bound the retry delay after a failure.
	// Defaults 200 ms and 10 s.
	BackoffMin, BackoffMax time.Duration
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Registerer for metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Syncer ships committed session log entries to controld in idempotent
// batches, in outbox order, and acknowledges the outbox only after
// controld confirmed a batch. After any outage it resumes from the last
// acknowledged position.
type Syncer struct {
	cfg  SyncConfig
	log  *slog.Logger
	kick chan struct{}

	mu      sync.Mutex // guards tenants
	tenants map[string]string

	batches  *prometheus.CounterVec
	records  prometheus.Counter
	dropped  prometheus.Counter // events without a tenant anywhere
	backlog  prometheus.GaugeFunc
	lastSync prometheus.Gauge
}

// NewSyncer validates cfg.
func NewSyncer(cfg SyncConfig) (*Syncer, error) {
	switch {
	case cfg.Outbox == nil:
		return nil, fmt.Errorf("%w: Outbox is required", ErrConfig)
	case cfg.Relay == "":
		return nil, fmt.Errorf("%w: Relay is required", ErrConfig)
	case !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://"):
		return nil, fmt.Errorf("%w: URL must be http(s)://host:port", ErrConfig)
	case cfg.Credential == "":
		return nil, fmt.Errorf("%w: Credential is required", ErrConfig)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = 5000
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 200 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Syncer{cfg: cfg, log: cfg.Logger.With("component", "sync"), kick: make(chan struct{}, 1), tenants: map[string]string{}}
	s.batches = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_relay_sync_batches_total", Help: "Sync batches sent to the control plane, by result."}, []string{"result"})
	s.records = prometheus.NewCounter(prometheus.CounterOpts{Name: "stapes_relay_sync_records_total", Help: "Log entries confirmed by the control plane."})
	s.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "stapes_relay_sync_events_dropped_total", Help: "Outbox events skipped because neither they nor their session's metadata name a tenant (a session never committed on this relay)."})
	s.backlog = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stapes_relay_sync_backlog_batches", Help: "Committed outbox records not yet confirmed by the control plane."},
		func() float64 { return float64(cfg.Outbox.OutboxStable() - cfg.Outbox.OutboxAcked()) })
	s.lastSync = prometheus.NewGauge(prometheus.GaugeOpts{Name: "stapes_relay_sync_last_success_timestamp_seconds", Help: "When the control plane last confirmed a batch."})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.batches, s.records, s.dropped, s.backlog, s.lastSync} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Kick makes an idle syncer look for new records now.
func (s *Syncer) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run syncs until ctx ends. While a batch is in flight, the next one is
// read from the outbox and encoded, so a backlog drains at the pace of
// controld rather than of controld plus the local reads.
func (s *Syncer) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	var ready *prepared // the next batch, built while the last was in flight
	for {
		n, next, err := s.syncOnce(ctx, ready, true)
		ready = next
		var wait time.Duration
		switch {
		case err != nil:
			ready = nil
			backoff = min(max(2*backoff, s.cfg.BackoffMin), s.cfg.BackoffMax)
			wait = backoff/2 + rand.N(backoff/2+1)
			s.log.Warn("sync failed; will retry", "err", err, "retry_in", wait.Round(time.Millisecond))
		case n > 0 || ready != nil:
			backoff = 0
			continue // more may be waiting
		default:
			backoff = 0
			wait = s.cfg.Interval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-s.kick:
			t.Stop()
		}
	}
}

// SyncOnce ships one batch, if there is anything to ship, and returns how
// many log entries controld confirmed.
func (s *Syncer) SyncOnce(ctx context.Context) (int, error) {
	n, _, err := s.syncOnce(ctx, nil, false)
	return n, err
}

// Drain ships batches, pipelined as Run does, until the outbox is
// acknowledged up to position upto (or an error). It returns the number of
// entries controld confirmed.
func (s *Syncer) Drain(ctx context.Context, upto uint64) (int, error) {
	total := 0
	var ready *prepared
	for s.cfg.Outbox.OutboxAcked() < upto {
		n, next, err := s.syncOnce(ctx, ready, true)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 && next == nil && s.cfg.Outbox.OutboxAcked() < upto && s.cfg.Outbox.OutboxStable() < upto {
			return total, fmt.Errorf("control: drain: outbox position %d is not stable yet (stable %d)", upto, s.cfg.Outbox.OutboxStable())
		}
		ready = next
	}
	return total, nil
}

// prepared is a batch read from the outbox and encoded.
type prepared struct {
	after uint64 // the outbox position it starts after
	b     syncproto.Batch
	body  []byte
}

// prepare reads the batch after position after and encodes it.
func (s *Syncer) prepare(ctx context.Context, after uint64) (*prepared, error) {
	b, err := s.build(ctx, after)
	if err != nil {
		return nil, err
	}
	p := &prepared{after: after, b: b}
	if len(b.Records) > 0 || len(b.Events) > 0 {
		p.body = syncproto.Append(make([]byte, 0, syncproto.Size(&b)), &b)
	}
	return p, nil
}

// syncOnce ships ready (when it starts at the acknowledged position) or a
// freshly read batch. With prefetch it reads and encodes the following
// batch while this one is in flight and returns it when this one was
// confirmed.
func (s *Syncer) syncOnce(ctx context.Context, ready *prepared, prefetch bool) (int, *prepared, error) {
	acked := s.cfg.Outbox.OutboxAcked()
	p := ready
	if p == nil || p.after != acked {
		var err error
		if p, err = s.prepare(ctx, acked); err != nil {
			return 0, nil, err
		}
	}
	if p.body == nil {
		if p.b.Pos > acked {
			// Only holes: nothing to send, but the cursor moves on.
			return 0, nil, s.cfg.Outbox.AckOutbox(ctx, p.b.Pos)
		}
		return 0, nil, nil
	}
	var next chan *prepared
	if prefetch {
		next = make(chan *prepared, 1)
		go func() {
			n, err := s.prepare(ctx, p.b.Pos)
			if err != nil || (n.body == nil && n.b.Pos == p.b.Pos) {
				n = nil // nothing more (or an error the next round meets again)
			}
			next <- n
		}()
	}
	ackedTo, err := s.post(ctx, p.body)
	var following *prepared
	if next != nil {
		following = <-next
	}
	if err != nil {
		s.batches.WithLabelValues("error").Inc()
		return 0, nil, err
	}
	if ackedTo != p.b.Pos {
		s.batches.WithLabelValues("error").Inc()
		return 0, nil, fmt.Errorf("%w: acked position %d, sent %d", ErrRejected, ackedTo, p.b.Pos)
	}
	if err := s.cfg.Outbox.AckOutbox(ctx, p.b.Pos); err != nil {
		return 0, nil, err
	}
	s.batches.WithLabelValues("ok").Inc()
	s.records.Add(float64(len(p.b.Records)))
	s.lastSync.SetToCurrentTime()
	return len(p.b.Records) + len(p.b.Events), following, nil
}

// build reads outbox records after position after into a batch
// of at most MaxRecords entries (a single larger commit is sent whole).
func (s *Syncer) build(ctx context.Context, after uint64) (syncproto.Batch, error) {
	b := syncproto.Batch{Relay: s.cfg.Relay, Pos: after}
	// Read the stable position before the outbox: ReadOutbox reads up to a
	// stable position at least this high, so when it finds nothing, every
	// position up to this one is a hole. (Reading it after would count
	// commits that finished in between as holes and lose them.)
	stable := s.cfg.Outbox.OutboxStable()
	var recs []storage.OutboxRecord
	total := 0
	errFull := fmt.Errorf("full")
	err := s.cfg.Outbox.ReadOutbox(ctx, b.Pos, 0, func(r storage.OutboxRecord) error {
		n := int(r.Last - r.First + 1)
		if r.Event != nil {
			n = 1
		}
		if total > 0 && total+n > s.cfg.MaxRecords {
			return errFull
		}
		recs = append(recs, r)
		total += n
		return nil
	})
	if err != nil && err != errFull {
		return b, err
	}
	if len(recs) == 0 {
		if stable > b.Pos {
			b.Pos = stable // only holes up to there
		}
		return b, nil
	}
	chains, err := s.readChains(ctx, recs)
	if err != nil {
		return b, err
	}
	for _, r := range recs {
		if ev := r.Event; ev != nil {
			tenant := ev.Tenant
			if tenant == "" {
				var err error
				if tenant, err = s.tenant(ctx, r.Session); errors.Is(err, errNoTenant) {
					// A session this relay never committed for (ended
					// here unseen, or TURN usage of a session homed
					// elsewhere): no tenant will ever turn up, and
					// controld cannot file it. Skip it; holding it
					// would hold the whole outbox.
					s.dropped.Inc()
					s.log.Warn("outbox event without a tenant skipped", "kind", ev.Kind, "pos", r.Pos)
					b.Pos = r.Pos
					continue
				} else if err != nil {
					return b, err
				}
			}
			b.Store = s.cfg.Outbox.ID()
			b.Events = append(b.Events, syncproto.Event{Pos: r.Pos, Tenant: tenant, Session: r.Session, Kind: ev.Kind,
				At: ev.At.UnixMicro(), Data: ev.Data})
			b.Pos = r.Pos
			continue
		}
		tenant, err := s.tenant(ctx, r.Session)
		if err != nil {
			return b, err
		}
		n := len(b.Records)
		for _, e := range chains.entries(r.Session, r.First, r.Last) {
			b.Records = append(b.Records, syncproto.Record{Tenant: tenant, Session: r.Session, Seq: e.seq, Hash: e.hash, Frame: e.frame})
		}
		if got := uint64(len(b.Records) - n); got != r.Last-r.First+1 {
			// The record's entries are not all readable: never acknowledge
			// past it. Ship what came before; retry it next time.
			b.Records = b.Records[:n]
			if n == 0 && len(b.Events) == 0 {
				return b, fmt.Errorf("%w: outbox position %d: session %s entries %d..%d, %d readable", ErrIncomplete, r.Pos, r.Session, r.First, r.Last, got)
			}
			return b, nil
		}
		b.Pos = r.Pos
	}
	return b, nil
}

// chainEntry is one log entry read for a batch.
type chainEntry struct {
	seq         uint64
	hash, frame []byte
}

// batchChains holds, per session, the entries of a batch's records, read
// with one store read per session (a batch holds many small group commits
// of few sessions: one iterator per record was most of the syncer's cost).
type batchChains struct {
	bySession map[string][]chainEntry // ascending seq from first[session]
	first     map[string]uint64
}

// entries returns the entries first..last of a session as read (fewer if
// not all were readable).
func (c *batchChains) entries(session string, first, last uint64) []chainEntry {
	es, base := c.bySession[session], c.first[session]
	if first < base {
		return nil
	}
	lo := first - base
	if lo >= uint64(len(es)) {
		return nil
	}
	hi := min(last-base+1, uint64(len(es)))
	out := es[lo:hi]
	for i, e := range out {
		if e.seq != first+uint64(i) {
			return out[:i]
		}
	}
	return out
}

// readChains reads every log range of recs, one read per session, into
// one arena of bytes.
func (s *Syncer) readChains(ctx context.Context, recs []storage.OutboxRecord) (*batchChains, error) {
	c := &batchChains{bySession: map[string][]chainEntry{}, first: map[string]uint64{}}
	last := map[string]uint64{}
	var order []string
	for _, r := range recs {
		if r.Event != nil {
			continue
		}
		if f, ok := c.first[r.Session]; !ok || r.First < f {
			if !ok {
				order = append(order, r.Session)
			}
			c.first[r.Session] = r.First
		}
		last[r.Session] = max(last[r.Session], r.Last)
	}
	var arena []byte
	for _, session := range order {
		first := c.first[session]
		var es []chainEntry
		err := s.cfg.Outbox.ReadChain(ctx, session, first-1, last[session], 0, func(seq uint64, hash, frame []byte) error {
			if need := len(hash) + len(frame); cap(arena)-len(arena) < need {
				arena = make([]byte, 0, max(1<<20, need))
			}
			start := len(arena)
			arena = append(arena, hash...)
			arena = append(arena, frame...)
			e := chainEntry{seq: seq, frame: arena[start+len(hash) : len(arena) : len(arena)]}
			if hash != nil {
				e.hash = arena[start : start+len(hash) : start+len(hash)]
			}
			es = append(es, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
		c.bySession[session] = es
	}
	return c, nil
}

func (s *Syncer) tenant(ctx context.Context, session string) (string, error) {
	s.mu.Lock()
	t, ok := s.tenants[session]
	s.mu.Unlock()
	if ok {
		return t, nil
	}
	blob, ok, err := s.cfg.Outbox.Meta(ctx, "session/"+session)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errNoTenant
	}
	s.mu.Lock()
	s.tenants[session] = string(blob)
	s.mu.Unlock()
	return string(blob), nil
}

// errNoTenant: the session has no tenant recorded on this relay.
var errNoTenant = errors.New("control: session has no tenant recorded")

// syncAnswer is controld's JSON answer to a batch.
type syncAnswer struct {
	AckedPos uint64   `json:"acked_pos"`
	Inserted int      `json:"inserted"`
	Broken   []string `json:"broken"`
}

func (s *Syncer) post(ctx context.Context, body []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s.cfg.URL, "/")+"/v1/relay/sync", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", syncproto.ContentType)
	req.Header.Set("Authorization", "Bearer "+s.cfg.Credential)
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("control: sync: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("control: sync: reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%w: HTTP %d", ErrRejected, resp.StatusCode)
	}
	var a syncAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return 0, fmt.Errorf("control: sync: bad answer: %w", err)
	}
	if len(a.Broken) > 0 {
		s.log.Error("control plane reports broken audit chains", "sessions", a.Broken)
	}
	return a.AckedPos, nil
}
