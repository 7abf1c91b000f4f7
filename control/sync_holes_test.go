package control

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/stapes-relay/stapes/storage"
)

// racyOutbox is an outbox whose commit at position 1 completes between
// the syncer's reads: ReadOutbox does not see it yet, OutboxStable
// afterwards says it is done.
type racyOutbox struct {
	read  bool
	acked uint64
}

func (o *racyOutbox) ReadOutbox(ctx context.Context, after uint64, limit int, fn func(storage.OutboxRecord) error) error {
	o.read = true
	return nil // position 1 is still being committed when the read happens
}
func (o *racyOutbox) AckOutbox(ctx context.Context, pos uint64) error { o.acked = pos; return nil }
func (o *racyOutbox) OutboxAcked() uint64                             { return o.acked }
func (o *racyOutbox) OutboxStable() uint64 {
	if o.read {
		return 1 // the commit finished right after the read
	}
	return 0 // before the read: position 1 in flight
}
func (o *racyOutbox) ReadChain(ctx context.Context, session string, after, upto uint64, limit int, fn func(uint64, []byte, []byte) error) error {
	return nil
}
func (o *racyOutbox) Meta(ctx context.Context, name string) ([]byte, bool, error) {
	return []byte("t1"), true, nil
}

// TestSyncNeverAcksAFreshCommitAsAHole: a commit that lands between the
// syncer's outbox read and its hole check must not be acknowledged unsent.
func TestSyncNeverAcksAFreshCommitAsAHole(t *testing.T) {
	o := &racyOutbox{}
	sy, err := NewSyncer(SyncConfig{Outbox: o, Relay: "r", URL: "http://127.0.0.1:1", Credential: "c", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sy.SyncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o.acked != 0 {
		t.Fatalf("acknowledged position %d, which was never read or sent", o.acked)
	}
}

// shortOutbox lists a record whose entries are not all readable yet (the
// store's read bound lags the outbox): the syncer must not acknowledge it.
type shortOutbox struct{ racyOutbox }

func (o *shortOutbox) ReadOutbox(ctx context.Context, after uint64, limit int, fn func(storage.OutboxRecord) error) error {
	if after >= 1 {
		return nil
	}
	return fn(storage.OutboxRecord{Pos: 1, Session: "s", First: 1, Last: 3})
}
func (o *shortOutbox) OutboxStable() uint64 { return 1 }
func (o *shortOutbox) ReadChain(ctx context.Context, session string, after, upto uint64, limit int, fn func(uint64, []byte, []byte) error) error {
	return fn(1, make([]byte, 32), []byte{5}) // only seq 1 of 1..3
}

func TestSyncNeverAcksAPartlyReadableRecord(t *testing.T) {
	o := &shortOutbox{}
	sy, err := NewSyncer(SyncConfig{Outbox: o, Relay: "r", URL: "http://127.0.0.1:1", Credential: "c", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sy.SyncOnce(context.Background()); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("got %v, want ErrIncomplete", err)
	}
	if o.acked != 0 {
		t.Fatalf("acknowledged position %d with entries missing", o.acked)
	}
}

func (o *racyOutbox) ID() string { return "store-1" }
