package client

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Client is a participant of one fitting session. It connects in the
// background, and reconnects and resumes until Close or a permanent error.
// Its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	dialer dialer
	bo     backoff

	ctx       context.Context // the client's lifetime; Close cancels it
	cancel    context.CancelFunc
	closeOnce sync.Once
	done      chan struct{} // closed when the supervisor has stopped

	deliveries chan Delivery
	events     chan Event
	slots      chan struct{} // one token per live durable send
	kick       chan struct{} // wakes the writer
	stats      counters

	mu       sync.Mutex // guards the fields below
	err      error      // why the client stopped; nil while it runs
	pending  pendingQueue
	acks     ackBook
	lastSeq  uint64 // highest seq seen in a DELIVER or RECEIPT
	offered  uint64 // highest durable seq offered to Deliveries (Ack accepts up to it)
	resume   bool   // HELLO carries last_seq
	epoch    uint64 // highest session epoch seen
	session  string // session of the first WELCOME
	welcome  *Welcome
	maxFrame int    // the relay's frame limit (last WELCOME)
	gen      uint64 // connection generation, one per WELCOME
	cur      *conn  // the admitted connection, nil between connections
	up       chan struct{}
	control  [][]byte        // PING/PONG frames for the writer
	eph      [2][]*ephemeral // queued ephemeral sends: [0] signal, [1] telemetry
	leaving  bool            // GOAWAY seen on cur: no new SENDs
}

// New validates cfg and starts connecting in the background.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:        cfg,
		log:        cfg.Logger,
		dialer:     newDialer(cfg.TLS, cfg.DialContext, cfg.ListenPacket),
		bo:         newBackoff(cfg.BackoffMin, cfg.BackoffMax),
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		deliveries: make(chan Delivery, cfg.DeliveryBuffer),
		events:     make(chan Event, cfg.EventBuffer),
		slots:      make(chan struct{}, cfg.MaxPending),
		kick:       make(chan struct{}, 1),
		resume:     cfg.Resume,
		lastSeq:    cfg.LastSeq,
		maxFrame:   wire.DefaultMaxFrame,
		up:         make(chan struct{}),
	}
	go c.supervise()
	return c, nil
}

// Close stops the client and waits until all its goroutines have ended.
// Live sends and acks end with ErrClosed. Deliveries still buffered stay
// readable; the channel is closed. Close is idempotent and returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(c.cancel)
	<-c.done
	c.dialer.http.CloseIdleConnections()
	return nil
}

// Deliveries returns messages from other participants, in seq order for
// durable ones. The application must keep reading: a durable delivery waits
// for room, and while it waits the connection reads nothing else. Closed
// when the client stops.
func (c *Client) Deliveries() <-chan Delivery { return c.deliveries }

// Events returns connection events. Events that find the channel full are
// dropped (Stats.EventsDropped). Closed when the client stops.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the client has stopped: Close, or a permanent error.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped (a permanent *Error, or ErrClosed), or
// nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// LastSeq returns the highest seq seen in a DELIVER or RECEIPT, the
// position the next connection resumes from. An application that keeps it
// across restarts passes it back as Config.LastSeq with Resume.
func (c *Client) LastSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSeq
}

// Welcome returns the WELCOME of the current connection (connected true),
// or of the last one, or the zero Welcome before the first.
func (c *Client) Welcome() (w Welcome, connected bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.welcome == nil {
		return Welcome{}, false
	}
	return *c.welcome, c.cur != nil
}

// WaitConnected waits until the client has an admitted connection and
// returns its WELCOME.
func (c *Client) WaitConnected(ctx context.Context) (Welcome, error) {
	for {
		c.mu.Lock()
		cur, up, err := c.cur, c.up, c.err
		var w Welcome
		if cur != nil {
			w = *c.welcome
		}
		c.mu.Unlock()
		switch {
		case cur != nil:
			return w, nil
		case err != nil:
			return Welcome{}, err
		}
		select {
		case <-up:
		case <-c.done:
		case <-ctx.Done():
			return Welcome{}, ctx.Err()
		}
	}
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats { return c.stats.snapshot() }

// supervise connects, runs and reconnects until the client stops. It owns
// every connection and waits for its goroutines before the next one.
func (c *Client) supervise() {
	defer c.stop()
	next, attempt, redirect := 0, 0, ""
	for c.ctx.Err() == nil {
		url := redirect
		redirect = ""
		if url == "" {
			url = c.cfg.URLs[next%len(c.cfg.URLs)]
			next++
		}
		cn, err := c.connect(url)
		transport := ""
		if err == nil {
			attempt = 0
			transport = cn.t.name()
			c.stats.connects.Add(1)
			typ := EventConnected
			if cn.welcome.Resumed {
				typ = EventResumed
			}
			w := cn.welcome
			c.emit(Event{Type: typ, Transport: transport, URL: url, Welcome: &w})
			c.log.Info("client connected", "transport", transport, "conn", w.ConnID,
				"session", w.Session, "epoch", w.Epoch, "head_seq", w.HeadSeq,
				"resumed", w.Resumed, "last_seq", w.ResumedFrom)
			err = c.run(cn)
		} else {
			c.stats.connectFailures.Add(1)
			transport = transportOf(url)
		}
		if c.ctx.Err() != nil {
			return
		}
		c.emit(Event{Type: EventDisconnected, Transport: transport, URL: url, Err: err, Attempt: attempt})
		if permanent(err) {
			c.fail(err)
			return
		}
		if ga, ok := errors.AsType[*goawayError](err); ok && ga.redirect != "" {
			c.log.Info("client moving", "transport", transport, "reason", ga.code.String())
			redirect = ga.redirect
			if attempt == 0 {
				// Go at once. A GOAWAY before WELCOME counts as a failed
				// attempt, so relays that keep turning the client away
				// before admitting it are retried with backoff.
				if cn == nil {
					attempt++
				}
				continue
			}
		}
		d := c.bo.delay(attempt)
		attempt++
		c.log.Info("client disconnected", "transport", transport, "err", err, "attempt", attempt, "retry_in", d)
		if !c.sleep(d) {
			return
		}
	}
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// emit offers ev to the Events channel without blocking. Only the
// supervisor and the reader it owns call it.
func (c *Client) emit(ev Event) {
	select {
	case c.events <- ev:
	default:
		c.stats.eventsDropped.Add(1)
	}
}

// fail records a permanent error.
func (c *Client) fail(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	c.log.Error("client stopped", "err", err)
	c.emit(Event{Type: EventFailed, Err: err})
}

// stop ends every live send and ack and closes the client's channels. It
// runs once, on the supervisor, after the last connection has stopped.
func (c *Client) stop() {
	c.mu.Lock()
	if c.err == nil {
		c.err = ErrClosed
	}
	err := c.err
	live := c.pending.drain()
	c.acks.drain(err)
	eph := c.dropEphemeral()
	c.mu.Unlock()
	for _, o := range live {
		o.sent.finish(err)
	}
	for _, e := range eph {
		e.sent.finish(err)
	}
	c.cancel()
	close(c.deliveries)
	close(c.events)
	close(c.done)
}

// wake tells the writer there may be something to write.
func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Client) release() { <-c.slots }
