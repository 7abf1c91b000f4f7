package scenario

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/wire"
)

// The failover scenario's fitting session: a clinician streams durable
// messages through the client SDK, a patient (the hearing aid's phone)
// receives them, acks every one received and applies the config commands.
const (
	fittingInterval    = 10 * time.Millisecond // one durable message per interval: 100 msg/s
	fittingConfigEvery = 5                     // every 5th message is a config command, the rest chat
	fittingMaxMessages = 200_000               // hard bound on messages sent
)

// welcomeAt is one admission of a client.
type welcomeAt struct {
	at    time.Time
	epoch uint64
	url   string
}

// fitting is the traffic of one session through the SDK, with what the
// scenario observes of it.
type fitting struct {
	clin, pat *client.Client
	book      *onceBook
	cancel    context.CancelFunc
	stopSend  chan struct{}
	sendDone  chan struct{} // closed when the clinician stopped sending
	watchDone chan struct{} // closed when every PERSISTED sent was noted
	wg        sync.WaitGroup

	mu        sync.Mutex // guards the fields below
	welcomes  map[*client.Client][]welcomeAt
	persisted []time.Time // when each PERSISTED arrived, in order
	sent      []*client.Sent
	degraded  int
	refused   int
	firstFail error // the first refusal or send error
}

// startFitting connects both clients to urls and starts the traffic.
func startFitting(ctx context.Context, e *Env, urls []string) (*fitting, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &fitting{book: newOnceBook(), cancel: cancel, stopSend: make(chan struct{}), sendDone: make(chan struct{}),
		watchDone: make(chan struct{}), welcomes: map[*client.Client][]welcomeAt{}}
	session := e.Session("failover")
	newClient := func(subject, role string) (*client.Client, error) {
		return client.New(client.Config{URLs: urls, Session: session, TLS: e.ClientTLS(),
			Token: func(context.Context) ([]byte, error) {
				return e.DeviceToken(session, subject, role, "HA-"+session, "bench-model")
			},
			// As cmd/relayd's TestFailoverUnderSIGKILL: quick reconnects,
			// and a dead connection noticed within 3 s.
			BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond, PingInterval: time.Second})
	}
	var err error
	if f.pat, err = newClient("patient", "patient"); err != nil {
		cancel()
		return nil, err
	}
	if f.clin, err = newClient("clinician", "clinician"); err != nil {
		f.pat.Close()
		cancel()
		return nil, err
	}
	for _, c := range []*client.Client{f.pat, f.clin} {
		f.wg.Go(func() { f.watchWelcomes(c) })
	}
	acks := make(chan uint64, 1024)
	f.wg.Go(func() { f.receive(ctx, acks) })
	f.wg.Go(func() { f.apply(ctx, acks) })
	sents := make(chan *client.Sent, 1024)
	f.wg.Go(func() { f.send(ctx, sents) })
	f.wg.Go(func() { f.watchPersisted(ctx, sents) })
	return f, nil
}

// watchWelcomes records every admission of c.
func (f *fitting) watchWelcomes(c *client.Client) {
	for ev := range c.Events() {
		if ev.Welcome != nil {
			f.mu.Lock()
			f.welcomes[c] = append(f.welcomes[c], welcomeAt{time.Now(), ev.Welcome.Epoch, ev.Welcome.URL})
			f.mu.Unlock()
		}
	}
}

// receive books every durable delivery to the patient (the SDK acks it
// received) and passes config commands on to be applied.
func (f *fitting) receive(ctx context.Context, acks chan<- uint64) {
	defer close(acks)
	for d := range f.pat.Deliveries() {
		if !d.Durable {
			continue
		}
		f.book.deliver(d.ClientID, d.Seq)
		if d.Kind == wire.KindConfig {
			select {
			case acks <- d.Seq:
			case <-ctx.Done():
			}
		}
	}
}

// apply acks config commands applied, apart from receive so a slow ack
// (during a failover) never holds up deliveries.
func (f *fitting) apply(ctx context.Context, acks <-chan uint64) {
	for seq := range acks {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_ = f.pat.Ack(actx, seq, wire.StageApplied, "") // an unconfirmed ack stays queued; the final receipt is checked
		cancel()
	}
}

// send streams durable messages from the clinician until stopSend.
func (f *fitting) send(ctx context.Context, sents chan<- *client.Sent) {
	defer close(f.sendDone)
	defer close(sents)
	tick := time.NewTicker(fittingInterval)
	defer tick.Stop()
	chat := make([]byte, 256)
	var configs uint64
	for i := range fittingMaxMessages {
		select {
		case <-f.stopSend:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		kind, payload := wire.KindChat, chat
		if i%fittingConfigEvery == 0 {
			kind = wire.KindConfig
			payload = wire.AppendConfig(nil, &wire.Config{BaseVersion: configs, Params: []wire.Param{{Name: "gain", Value: int64(configs % 2 * 10)}}})
			configs++
		}
		s, err := f.clin.SendWithID(ctx, "m"+strconv.Itoa(i), kind, payload, true)
		if err != nil {
			if ctx.Err() == nil {
				f.fail(fmt.Errorf("clinician send: %w", err))
			}
			return
		}
		f.mu.Lock()
		f.sent = append(f.sent, s)
		f.mu.Unlock()
		select {
		case sents <- s:
		case <-ctx.Done():
			return
		}
	}
}

// watchPersisted notes when each message's PERSISTED arrives. Messages
// are PERSISTED in the order they were sent (one sender, written in Send
// order on every connection), so waiting for them in that order times
// each one as it comes.
func (f *fitting) watchPersisted(ctx context.Context, sents <-chan *client.Sent) {
	defer close(f.watchDone)
	for s := range sents {
		seq, degraded, err := s.Persisted(ctx)
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.mu.Lock()
			f.refused++
			f.mu.Unlock()
			f.fail(fmt.Errorf("%s refused: %w", s.ClientID(), err))
			continue
		}
		f.book.persist(s.ClientID(), seq)
		f.mu.Lock()
		f.persisted = append(f.persisted, now)
		if degraded {
			f.degraded++
		}
		f.mu.Unlock()
	}
}

func (f *fitting) fail(err error) {
	f.mu.Lock()
	if f.firstFail == nil {
		f.firstFail = err
	}
	f.mu.Unlock()
}

// home returns where both clients are admitted and the epoch, when they
// are on one relay at one epoch.
func (f *fitting) home() (url string, epoch uint64, ok bool) {
	wc, okc := f.clin.Welcome()
	wp, okp := f.pat.Welcome()
	if !okc || !okp || wc.URL != wp.URL || wc.Epoch != wp.Epoch {
		return "", 0, false
	}
	return wc.URL, wc.Epoch, true
}

// resumedAt returns when c was first admitted after a failover away from
// home at epoch: on another relay, with a higher epoch.
func (f *fitting) resumedAt(c *client.Client, epoch uint64, home string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.welcomes[c] {
		if w.epoch > epoch && w.url != home {
			return w.at, true
		}
	}
	return time.Time{}, false
}

// persistedAfter returns when the first PERSISTED at or after t arrived.
func (f *fitting) persistedAfter(t time.Time) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.persisted) - 1; i >= 0 && !f.persisted[i].Before(t); i-- {
		if i == 0 || f.persisted[i-1].Before(t) {
			return f.persisted[i], true
		}
	}
	return time.Time{}, false
}

// failure returns the first refusal or send error.
func (f *fitting) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firstFail
}

// finish stops sending and waits, up to d, until every message sent
// ended with its final receipt (received; applied for config), its
// PERSISTED was noted, and the patient's deliveries were booked (the SDK
// acks a delivery received once it is in the Deliveries channel, before
// the patient's loop books it).
func (f *fitting) finish(ctx context.Context, d time.Duration) error {
	close(f.stopSend)
	<-f.sendDone
	f.mu.Lock()
	all := f.sent
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for _, s := range all {
		r, err := s.Final(ctx)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%s has no final receipt %v after the last kill (receipts %v)", s.ClientID(), d, s.Receipts())
		case err != nil:
			return fmt.Errorf("%s: %w", s.ClientID(), err)
		case s.Kind() == wire.KindConfig && r.Stage != wire.StageApplied:
			return fmt.Errorf("%s ended %v, not applied", s.ClientID(), r.Stage)
		}
	}
	select {
	case <-f.watchDone:
	case <-ctx.Done():
		return fmt.Errorf("PERSISTED not all noted %v after the last kill", d)
	}
	// What is still missing after this is reported by the book.
	_ = waitUntil(ctx, d, func() bool { return f.book.verify().Missing == 0 })
	return nil
}

// close stops both clients and waits for the goroutines.
func (f *fitting) close() {
	f.cancel()
	f.clin.Close()
	f.pat.Close()
	f.wg.Wait()
}
