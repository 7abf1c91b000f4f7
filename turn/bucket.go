package turn

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// bucket is a token bucket in bytes (or requests). take never allocates.
// The zero rate means unlimited.
type bucket struct {
	mu     sync.Mutex // guards the fields below
	tokens float64
	last   int64 // monotonic ns of the last refill
	rate   float64
	burst  float64
}

// epoch anchors monotonic readings: time.Since uses the monotonic clock.
var epoch = time.Now()

func monoNow() int64 { return int64(time.Since(epoch)) }

func newBucket(rate, burst float64) *bucket {
	return &bucket{rate: rate, burst: burst, tokens: burst, last: monoNow()}
}

// take removes n tokens if there are that many and reports whether it did.
func (b *bucket) take(n float64) bool {
	if b == nil || b.rate <= 0 {
		return true
	}
	now := monoNow()
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+float64(now-b.last)*b.rate/1e9)
	b.last = now
	ok := b.tokens >= n
	if ok {
		b.tokens -= n
	}
	b.mu.Unlock()
	return ok
}

// ipLimiter is a fixed table of request buckets indexed by a hash of the
// source address: bounded memory whatever the number of sources, no
// allocation per request; two sources sharing a slot share a budget.
type ipLimiter struct {
	seed  maphash.Seed
	all   *bucket
	slots []bucket
}

const ipSlots = 4096

func newIPLimiter(rate, perIP float64) *ipLimiter {
	l := &ipLimiter{seed: maphash.MakeSeed(), all: newBucket(rate, 2*rate)}
	if perIP > 0 {
		l.slots = make([]bucket, ipSlots)
		now := monoNow()
		for i := range l.slots {
			l.slots[i] = bucket{rate: perIP, burst: 2 * perIP, tokens: 2 * perIP, last: now}
		}
	}
	return l
}

// allow takes one request from the source's slot and from the global bucket.
func (l *ipLimiter) allow(a netip.Addr) bool {
	if l.slots != nil {
		b := a.Unmap().As16()
		if !l.slots[maphash.Bytes(l.seed, b[:])%ipSlots].take(1) {
			return false
		}
	}
	return l.all.take(1)
}
