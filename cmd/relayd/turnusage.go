package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control/syncproto"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/turn"
)

// eventAppender is the outbox (storage.Store).
type eventAppender interface {
	AppendEvent(ctx context.Context, ev storage.Event) (uint64, error)
}

// tenantSource names a session's tenant (relay.Server).
type tenantSource interface {
	SessionTenant(ctx context.Context, id string) (string, bool, error)
}

// liveUsage lists the sessions with live allocations (turn.Server).
type liveUsage interface{ Usage() []turn.Usage }

// Reasons a usage record is not recorded (metric label and log field).
const (
	usageQueueFull      = "queue_full"
	usageUnknownSession = "unknown_session"
	usageWriteFailed    = "write_failed"
)

// usageRecorder puts each session's TURN usage (turn.Config.OnUsage) into
// the sync outbox as a syncproto.EventTURNUsage event; the syncer ships
// it to controld (session_events, kind turn_usage).
//
// Every event carries its tenant, resolved here, because the syncer can
// file a tenant-less event only under a session with a log on this relay.
// A session's tenant is learned while its allocations are live (every
// learnEvery, from the relay's live sessions or the session's metadata)
// and asked again when the record comes. A session this relay knows
// nothing about — a credential for a session homed elsewhere whose
// participants never connected here — cannot be filed: its record is
// dropped and counted, never left to hold up the outbox.
//
// OnUsage never blocks (turn's hook must not): records queue (bounded,
// drops counted) for one writer goroutine.
type usageRecorder struct {
	out     eventAppender
	tenants tenantSource
	relayID string
	log     *slog.Logger

	ch   chan turn.Usage
	stop chan struct{}
	done chan struct{}
	live liveUsage // set by watch, before run reads it

	mu    sync.Mutex        // guards known
	known map[string]string // session → tenant, learned while live

	recorded prometheus.Counter
	dropped  *prometheus.CounterVec
}

const (
	usageQueue   = 4096
	usageKnown   = 100_000 // sessions whose tenant is remembered
	learnEvery   = 5 * time.Second
	usageRetries = 3
)

func newUsageRecorder(out eventAppender, tenants tenantSource, relayID string, reg prometheus.Registerer, labels prometheus.Labels, log *slog.Logger) (*usageRecorder, error) {
	r := &usageRecorder{out: out, tenants: tenants, relayID: relayID, log: log,
		ch: make(chan turn.Usage, usageQueue), stop: make(chan struct{}), done: make(chan struct{}), known: map[string]string{},
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "stapes_turn_usage_records_total",
			Help: "TURN usage records put into the sync outbox.", ConstLabels: labels}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_turn_usage_dropped_total",
			Help: "TURN usage records not recorded, by reason.", ConstLabels: labels}, []string{"reason"}),
	}
	for _, reason := range []string{usageQueueFull, usageUnknownSession, usageWriteFailed} {
		r.dropped.WithLabelValues(reason)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.recorded, r.dropped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// OnUsage is turn.Config.OnUsage.
func (r *usageRecorder) OnUsage(u turn.Usage) {
	select {
	case r.ch <- u:
	default:
		r.drop(usageQueueFull)
	}
}

func (r *usageRecorder) drop(reason string) {
	r.dropped.WithLabelValues(reason).Inc()
	r.log.Warn("turn usage not recorded", "reason", reason)
}

// start runs the writer; live, if set, is asked every learnEvery for the
// sessions with live allocations.
func (r *usageRecorder) start(live liveUsage) {
	r.live = live
	go r.run()
}

// close writes what is queued and stops the writer. Call it after the
// TURN server's Close, which hands over the records of open allocations.
func (r *usageRecorder) close() {
	close(r.stop)
	<-r.done
}

func (r *usageRecorder) run() {
	defer close(r.done)
	t := time.NewTicker(learnEvery)
	defer t.Stop()
	for {
		select {
		case u := <-r.ch:
			r.record(u)
		case <-t.C:
			r.learn()
		case <-r.stop:
			for {
				select {
				case u := <-r.ch:
					r.record(u)
				default:
					return
				}
			}
		}
	}
}

// learn remembers the tenants of the sessions with live allocations.
func (r *usageRecorder) learn() {
	if r.live == nil {
		return
	}
	for _, u := range r.live.Usage() {
		r.mu.Lock()
		_, ok := r.known[u.Session]
		full := len(r.known) >= usageKnown
		r.mu.Unlock()
		if ok || full {
			continue
		}
		if tenant, ok := r.tenant(u.Session); ok {
			r.mu.Lock()
			r.known[u.Session] = tenant
			r.mu.Unlock()
		}
	}
}

func (r *usageRecorder) tenant(session string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tenant, ok, err := r.tenants.SessionTenant(ctx, session)
	return tenant, ok && err == nil
}

// usageData is the event's JSON: bytes_in/packets_in were received from
// the participant's client and relayed to peers, bytes_out/packets_out
// relayed from peers to the client.
type usageData struct {
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
	PacketsIn   uint64 `json:"packets_in"`
	PacketsOut  uint64 `json:"packets_out"`
	Allocations int    `json:"allocations"`
	FirstSeen   string `json:"first_seen"`
	Relay       string `json:"relay"`
}

func (r *usageRecorder) record(u turn.Usage) {
	r.mu.Lock()
	tenant, ok := r.known[u.Session]
	delete(r.known, u.Session)
	r.mu.Unlock()
	if !ok {
		if tenant, ok = r.tenant(u.Session); !ok {
			r.drop(usageUnknownSession)
			return
		}
	}
	data, _ := json.Marshal(usageData{BytesIn: u.BytesToPeer, BytesOut: u.BytesFromPeer, PacketsIn: u.PacketsToPeer,
		PacketsOut: u.PacketsFromPeer, Allocations: u.Allocations, FirstSeen: u.FirstSeen.UTC().Format(time.RFC3339Nano), Relay: r.relayID})
	at := u.LastSeen
	if at.IsZero() {
		at = time.Now()
	}
	ev := storage.Event{Session: u.Session, Tenant: tenant, Kind: syncproto.EventTURNUsage, At: at, Data: data}
	for attempt := range usageRetries {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := r.out.AppendEvent(ctx, ev)
		cancel()
		if err == nil {
			r.recorded.Inc()
			return
		}
		if attempt == usageRetries-1 {
			r.dropped.WithLabelValues(usageWriteFailed).Inc()
			r.log.Warn("turn usage not recorded", "reason", usageWriteFailed, "err", err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
