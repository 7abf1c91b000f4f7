package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/control/syncproto"
)

// syncAnswer is controld's answer to a sync batch (the part the bench
// reads).
type syncAnswer struct {
	AckedPos uint64   `json:"acked_pos"`
	Inserted int64    `json:"inserted"` // audit_log rows
	Messages int64    `json:"messages"`
	Receipts int64    `json:"receipts"`
	Broken   []string `json:"broken"`
}

// rows is every row the batch inserted.
func (a syncAnswer) rows() int64 { return a.Inserted + a.Messages + a.Receipts }

// tappedBatch is one sync POST the tap saw answered 200.
type tappedBatch struct {
	body []byte // the syncproto batch, kept for the replay
	ans  syncAnswer
	rtt  time.Duration
}

// syncTap is the syncer's HTTP transport: it times every sync POST from
// the request to the end of controld's answer (the batch commit: decode,
// chain verification, COPY into Postgres), keeps the batches when capture
// is set, and calls onConfirm with each confirmed batch body.
type syncTap struct {
	base      *http.Transport
	capture   bool
	onConfirm func(body []byte, at time.Time)

	mu      sync.Mutex // guards the fields below
	rtt     *bench.Histogram
	batches []tappedBatch
	failed  int
	broken  int // sessions reported with a broken audit chain, summed over batches
}

func newSyncTap(capture bool, onConfirm func(body []byte, at time.Time)) *syncTap {
	return &syncTap{base: http.DefaultTransport.(*http.Transport).Clone(), capture: capture, onConfirm: onConfirm,
		rtt: bench.NewHistogram()}
}

// RoundTrip implements http.RoundTripper.
func (t *syncTap) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.GetBody != nil && req.ContentLength > 0 && (t.capture || t.onConfirm != nil) {
		rc, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		body = make([]byte, req.ContentLength)
		_, err = io.ReadFull(rc, body)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.fail()
		return nil, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	at := time.Now()
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	if err != nil {
		t.fail()
		return nil, err
	}
	var a syncAnswer
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &a) != nil {
		t.fail()
		return resp, nil
	}
	t.mu.Lock()
	t.rtt.Record(at.Sub(start))
	t.broken += len(a.Broken)
	if t.capture {
		t.batches = append(t.batches, tappedBatch{body: body, ans: a, rtt: at.Sub(start)})
	}
	t.mu.Unlock()
	if t.onConfirm != nil {
		t.onConfirm(body, at)
	}
	return resp, nil
}

func (t *syncTap) fail() {
	t.mu.Lock()
	t.failed++
	t.mu.Unlock()
}

// Close drops the tap's idle connections.
func (t *syncTap) Close() { t.base.CloseIdleConnections() }

// postBatch sends a sync batch body to controld as the relay node does.
func postBatch(ctx context.Context, hc *http.Client, url, cred string, body []byte) (syncAnswer, error) {
	var a syncAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/relay/sync", bytes.NewReader(body))
	if err != nil {
		return a, err
	}
	req.Header.Set("Content-Type", syncproto.ContentType)
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := hc.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return a, err
	}
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("scenario: sync replay: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	return a, json.Unmarshal(raw, &a)
}

// recKey names a log entry.
type recKey struct {
	session string
	seq     uint64
}

// lagBook measures sync lag: from PERSISTED reaching the sender to the
// batch holding that entry being confirmed by controld. The two events
// may arrive in either order (the syncer can ship an entry before its
// PERSISTED frame is read); an entry confirmed first counts as lag 0.
type lagBook struct {
	mu        sync.Mutex // guards the fields below
	waiting   map[recKey]time.Time
	early     map[recKey]time.Time // confirmed before PERSISTED was seen
	lag       *bench.Histogram
	persisted int
}

func newLagBook() *lagBook {
	return &lagBook{waiting: map[recKey]time.Time{}, early: map[recKey]time.Time{}, lag: bench.NewHistogram()}
}

// persist records PERSISTED for k at at.
func (b *lagBook) persist(k recKey, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.persisted++
	if c, ok := b.early[k]; ok {
		delete(b.early, k)
		b.lag.Record(max(c.Sub(at), 0))
		return
	}
	b.waiting[k] = at
}

// confirm records every entry of a confirmed batch body.
func (b *lagBook) confirm(body []byte, at time.Time) {
	batch, err := syncproto.Decode(body)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range batch.Records {
		k := recKey{r.Session, r.Seq}
		if p, ok := b.waiting[k]; ok {
			delete(b.waiting, k)
			b.lag.Record(at.Sub(p))
		} else {
			// A message whose PERSISTED is still on its way, or a
			// receipt (never PERSISTED to the sender): kept until the
			// book is read.
			b.early[k] = at
		}
	}
}

// persistedCount is how many PERSISTED were recorded.
func (b *lagBook) persistedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.persisted
}

// pending is how many persisted entries wait for confirmation.
func (b *lagBook) pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting)
}

// finish records every entry still unconfirmed at the lag it has
// reached (so a loss weighs at least as much as the slowest entry) and
// returns the histogram and how many were unconfirmed.
func (b *lagBook) finish(now time.Time) (*bench.Histogram, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.waiting)
	for k, p := range b.waiting {
		b.lag.Record(now.Sub(p))
		delete(b.waiting, k)
	}
	return b.lag, n
}
