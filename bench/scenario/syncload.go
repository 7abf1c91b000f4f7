package scenario

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/bench/relayconn"
	"github.com/stapes-relay/stapes/relay/wire"
)

// syncPayload is the size of a message body: a config command or a chat
// line (as in pgstore's ingest benchmarks).
const syncPayload = 160

// syncPair is one session of the sync scenario: the clinician sends
// durable messages, the patient ACKs (received) every DELIVER, so each
// message becomes two log entries, the DELIVER and its RECEIPT.
type syncPair struct {
	id         string
	clin, pat  *relayconn.Conn
	window     chan struct{} // unanswered SENDs, when pipelining
	errs       atomic.Int64
	lastRefuse atomic.Pointer[string]
}

// dialPairs opens n sessions on r, the patient first so that it sees
// every DELIVER; window > 0 gives each a window of unanswered SENDs.
func dialPairs(ctx context.Context, e *Env, r *syncRelay, prefix string, n, window int, onPersist func(p *syncPair, f *wire.Frame)) ([]*syncPair, error) {
	pairs := make([]*syncPair, 0, n)
	closeAll := func() {
		for _, p := range pairs {
			p.Close()
		}
	}
	for i := range n {
		p := &syncPair{id: e.Session(prefix)}
		if window > 0 {
			p.window = make(chan struct{}, window)
		}
		tp, err := e.Token(p.id, "p"+strconv.Itoa(i), "patient")
		if err != nil {
			closeAll()
			return nil, err
		}
		tc, err := e.Token(p.id, "c"+strconv.Itoa(i), "clinician")
		if err != nil {
			closeAll()
			return nil, err
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var pat atomic.Pointer[relayconn.Conn]
		p.pat, err = relayconn.Dial(dctx, relayconn.Options{Transport: "ws", Addr: r.Addr(), TLS: e.ClientTLS(), Token: tp,
			OnFrame: func(f *wire.Frame) {
				if f.Type != wire.TypeDeliver {
					return
				}
				if c := pat.Load(); c != nil {
					if err := c.Send(context.Background(), &wire.Frame{Type: wire.TypeAck, Seq: f.Seq, Stage: wire.StageReceived}); err != nil {
						p.errs.Add(1)
					}
				}
			}})
		if err == nil {
			pat.Store(p.pat)
			p.clin, err = relayconn.Dial(dctx, relayconn.Options{Transport: "ws", Addr: r.Addr(), TLS: e.ClientTLS(), Token: tc,
				OnFrame: func(f *wire.Frame) {
					switch f.Type {
					case wire.TypePersisted:
						onPersist(p, f)
					case wire.TypeError:
						p.errs.Add(1)
						msg := fmt.Sprintf("%v: %s", f.Code, f.Message)
						p.lastRefuse.Store(&msg)
					}
				}})
		}
		cancel()
		if err != nil {
			if p.pat != nil {
				p.pat.Close()
			}
			closeAll()
			return nil, err
		}
		pairs = append(pairs, p)
	}
	return pairs, nil
}

func (p *syncPair) Close() {
	if p.clin != nil {
		p.clin.Close()
	}
	if p.pat != nil {
		p.pat.Close()
	}
}

// err reports a refusal or failed ACK seen on the pair.
func (p *syncPair) err() error {
	if n := p.errs.Load(); n > 0 {
		msg := "failed ACK"
		if m := p.lastRefuse.Load(); m != nil {
			msg = *m
		}
		return fmt.Errorf("scenario: session %s: %d error(s), last: %s", p.id, n, msg)
	}
	return nil
}

func messageFrame(id string, body []byte) *wire.Frame {
	return &wire.Frame{Type: wire.TypeSend, Kind: wire.KindChat, Flags: wire.FlagDurable, ClientID: id, Payload: body}
}

// fillOutbox commits about entries log entries to r while nothing syncs:
// sessions clinicians send entries/2 durable messages in total,
// pipelined (a window of fillWindow unanswered SENDs each), and their
// patients ACK them. It returns when every session's head holds all
// messages and receipts, with the sessions and their entries in total.
func fillOutbox(ctx context.Context, e *Env, r *syncRelay, entries, sessions int) ([]string, int, error) {
	const fillWindow = 64
	per := max(entries/2/sessions, 1)
	pairs, err := dialPairs(ctx, e, r, "sync-fill", sessions, fillWindow, func(p *syncPair, f *wire.Frame) {
		select {
		case <-p.window:
		default:
		}
	})
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		for _, p := range pairs {
			p.Close()
		}
	}()
	body := make([]byte, syncPayload)
	deadline := time.Now().Add(2 * time.Minute)
	fctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	g, gctx := errgroup.WithContext(fctx)
	for _, p := range pairs {
		g.Go(func() error {
			for i := range per {
				select {
				case p.window <- struct{}{}:
				case <-gctx.Done():
					return gctx.Err()
				}
				if err := p.clin.Send(gctx, messageFrame("f"+strconv.Itoa(i), body)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, fmt.Errorf("scenario: filling the outbox: %w", err)
	}
	ids := make([]string, len(pairs))
	total := 0
	for i, p := range pairs {
		ids[i] = p.id
		// Every message and its receipt committed.
		for {
			h, err := r.st.Head(fctx, p.id)
			if err != nil {
				return nil, 0, err
			}
			if h >= uint64(2*per) {
				total += int(h)
				break
			}
			if err := p.err(); err != nil {
				return nil, 0, err
			}
			if err := sleepCtx(fctx, 5*time.Millisecond); err != nil { // polling the store's head
				return nil, 0, fmt.Errorf("scenario: filling the outbox: session %s at %d of %d entries: %w", p.id, h, 2*per, err)
			}
		}
	}
	for _, p := range pairs {
		if err := p.err(); err != nil {
			return nil, 0, err
		}
	}
	return ids, total, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drainOutbox ships r's whole outbox with a syncer (batches pipelined as
// Syncer.Run does while there is a backlog: the next is read and encoded
// while one is in flight) and measures rows per second over the drain.
func drainOutbox(ctx context.Context, s *syncStack, r *syncRelay) (map[string]float64, *syncTap, error) {
	tap := newSyncTap(true, nil)
	defer tap.Close()
	sy, err := s.syncer(r, tap)
	if err != nil {
		return nil, nil, err
	}
	target := r.st.OutboxStable()
	u := bench.StartUsage(s.procs()...)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := sy.Drain(dctx, target); err != nil {
		return nil, nil, fmt.Errorf("scenario: sync drain (outbox at %d of %d): %w", r.st.OutboxAcked(), target, err)
	}
	wall := time.Since(start)
	var rows, entries, broken int64
	var post time.Duration
	for _, b := range tap.batches {
		rows += b.ans.rows()
		entries += b.ans.Inserted
		broken += int64(len(b.ans.Broken))
		post += b.rtt
	}
	m := tap.rtt.Percentiles().Metrics("")
	maps.Copy(m, u.Metrics(int(rows)))
	m["throughput_per_s"] = float64(rows) / wall.Seconds()
	m["entries_per_s"] = float64(entries) / wall.Seconds()
	m["rows"] = float64(rows)
	m["batches"] = float64(len(tap.batches))
	m["broken_sessions"] = float64(broken)
	// The syncer's own time per batch, outside the POST: reading the
	// outbox and the log from Pebble, encoding, acknowledging.
	m["syncer_us_per_batch"] = float64((wall - post).Microseconds()) / float64(max(len(tap.batches), 1))
	return m, tap, nil
}

// replayBatches posts every batch of a finished drain again and counts
// the rows controld inserted (the goal: none).
func replayBatches(ctx context.Context, s *syncStack, batches []tappedBatch) (map[string]float64, error) {
	tap := newSyncTap(false, nil)
	defer tap.Close()
	hc := &http.Client{Transport: tap, Timeout: 30 * time.Second}
	var inserted, offered int64
	u := bench.StartUsage(s.procs()...)
	start := time.Now()
	for _, b := range batches {
		a, err := postBatch(ctx, hc, s.url, s.cred, b.body)
		if err != nil {
			return nil, err
		}
		if a.AckedPos != b.ans.AckedPos {
			return nil, fmt.Errorf("scenario: replay acked position %d, first time %d", a.AckedPos, b.ans.AckedPos)
		}
		inserted += a.rows()
		offered += b.ans.rows()
	}
	wall := time.Since(start)
	m := tap.rtt.Percentiles().Metrics("")
	maps.Copy(m, u.Metrics(int(offered)))
	m["rows_inserted"] = float64(inserted)
	m["throughput_per_s"] = float64(offered) / wall.Seconds()
	return m, nil
}
