package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Store is the relay's local Pebble store. All methods are safe for
// concurrent use; Commit calls for one session must not overlap (they get
// ErrConcurrentCommit), Commit calls for different sessions are encouraged to,
// so that Pebble groups their fsyncs.
type Store struct {
	db      *pebble.DB
	log     *slog.Logger
	reg     prometheus.Registerer // nil: no metrics registered
	coll    collector
	metrics *metrics
	fail    *failure

	mu         sync.Mutex // guards the fields below
	closed     bool
	inflight   int                  // calls between enter and exit
	idle       *sync.Cond           // signalled when inflight drops to 0 after close
	committing map[string]*inflight // session -> its Commit in progress
	heads      map[string]uint64    // session -> durable head (a bounded cache)

	closeOnce sync.Once
	closeErr  error

	outMu       sync.Mutex // guards the outbox fields below
	outNext     uint64     // next outbox position
	outAcked    uint64     // last acknowledged position
	outInflight map[uint64]struct{}

	lazyMu      sync.Mutex // guards the fields below (CommitUnsynced's background sync)
	lazyPos     []uint64   // outbox positions of unsynced commits, released by the next sync
	lazyDirty   bool       // an unsynced commit awaits a sync
	lazyRunning bool       // syncLoop is running
	lazyDelay   time.Duration

	id        string // see ID
	recovered bool   // see Recovered
}

// Store implements relay.Store (declared in package relay, which storage
// does not import).
var _ interface {
	Commit(ctx context.Context, session string, entries []wire.LogEntry, meta map[string][]byte) error
	Head(ctx context.Context, session string) (uint64, error)
	ReadLog(ctx context.Context, session string, after, upto uint64, limit int, fn func(seq uint64, frame []byte) error) error
	LookupKey(ctx context.Context, session, key string) (seq uint64, ok bool, err error)
	Meta(ctx context.Context, name string) (blob []byte, ok bool, err error)
} = (*Store)(nil)

// Open opens (creating if needed) the store in dir on opts.FS.
func Open(dir string, opts Options) (*Store, error) {
	opts.EnsureDefaults()
	if err := opts.validate(dir); err != nil {
		return nil, err
	}
	s := &Store{
		log:         opts.Logger.With("component", "storage"),
		reg:         opts.Registerer,
		metrics:     newMetrics(),
		committing:  make(map[string]*inflight),
		heads:       make(map[string]uint64),
		outInflight: make(map[uint64]struct{}),
		lazyDelay:   opts.UnsyncedDelay,
	}
	s.idle = sync.NewCond(&s.mu)
	s.coll = collector{s: s}
	s.fail = &failure{
		log:     s.log,
		onFatal: opts.OnFatal,
		gauge:   func() { s.metrics.failed.Set(1) },
	}

	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	po := &pebble.Options{
		FS:                 opts.FS,
		Cache:              cache,
		MemTableSize:       opts.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log: s.log, fail: s.fail},
		EventListener:      s.eventListener(),
	}
	// Most idempotency-key lookups miss (they are a safety net); bloom
	// filters keep a miss from reading every overlapping table's index.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("storage: open: %w", err)
	}
	s.db = db
	if err := s.fail.get(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage: open: %w", err)
	}
	if err := s.loadOutbox(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage: open: outbox: %w", err)
	}
	if err := s.loadID(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage: open: store id: %w", err)
	}
	if err := s.loadClean(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage: open: clean-close mark: %w", err)
	}
	if s.reg != nil {
		if err := s.reg.Register(s.coll); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("storage: open: register metrics: %w", err)
		}
	}
	return s, nil
}

func (s *Store) eventListener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			s.metrics.backgroundErrors.Inc()
			s.log.Error("storage: pebble background error", "err", err)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			s.metrics.diskSlow.Inc()
			s.log.Warn("storage: disk slow", "op", info.OpType.String(), "duration", info.Duration)
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			s.metrics.writeStalls.Inc()
			s.log.Warn("storage: write stall", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			s.log.Info("storage: write stall ended")
		},
	}
}

// Close waits for calls in progress, unregisters the metrics and closes
// Pebble. It is idempotent: later calls return the first call's result.
// Calls after Close return ErrClosed. A ReadLog callback must not call Close.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for s.inflight > 0 {
			s.idle.Wait()
		}
		s.mu.Unlock()
		if s.reg != nil {
			s.reg.Unregister(s.coll)
		}
		if err := s.markClean(); err != nil && s.fail.get() == nil {
			s.log.Warn("storage: recording a clean close", "err", err)
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("storage: close: %w", err)
		}
	})
	return s.closeErr
}

// enter admits a call; it returns false once Close has begun.
func (s *Store) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.inflight++
	return true
}

func (s *Store) exit() {
	s.mu.Lock()
	s.inflight--
	if s.inflight == 0 && s.closed {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// begin admits a call that reads or writes data: the store must be open and
// not failed. On success the caller must call s.exit.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.enter() {
		return ErrClosed
	}
	if err := s.fail.get(); err != nil {
		s.exit()
		return err
	}
	return nil
}

// get reads one value and returns a copy; ok is false if the key is absent.
func (s *Store) get(key []byte) (val []byte, ok bool, err error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	val = append(make([]byte, 0, len(v)), v...)
	if err := closer.Close(); err != nil {
		return nil, false, err
	}
	return val, true, nil
}
