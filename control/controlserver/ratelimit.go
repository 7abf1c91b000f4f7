package controlserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxLimiterKeys bounds the keys one limiter keeps. Past it, buckets that
// have refilled are forgotten; if that is not enough (a flood of distinct
// keys within one refill time) the limiter forgets every key rather than
// grow or refuse everyone.
const maxLimiterKeys = 100_000

// limiter is a set of token buckets by key: a key may spend perMinute
// tokens at once and gets one back every minute/perMinute. Safe for
// concurrent use. A nil limiter allows everything.
type limiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex // guards buckets
	buckets map[string]bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// newLimiter returns a limiter of perMinute, or nil (unlimited) when
// perMinute is negative.
func newLimiter(perMinute int) *limiter {
	if perMinute < 0 {
		return nil
	}
	return &limiter{rate: float64(perMinute) / 60, burst: float64(perMinute), buckets: map[string]bucket{}}
}

// take spends one token of key at now. If none is left it spends nothing
// and reports how long until one is back.
func (l *limiter) take(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimiterKeys {
			l.prune(now)
		}
		b = bucket{tokens: l.burst, at: now}
	}
	if dt := now.Sub(b.at).Seconds(); dt > 0 {
		b.tokens = math.Min(l.burst, b.tokens+dt*l.rate)
	}
	b.at = now
	if b.tokens < 1 {
		l.buckets[key] = b
		if l.rate == 0 {
			return false, time.Hour
		}
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	l.buckets[key] = b
	return true, 0
}

// prune forgets the buckets that are full again at now, or every bucket
// if none is.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxLimiterKeys {
		clear(l.buckets)
	}
}

// limiters are the server's rate limits.
type limiters struct {
	loginIP   *limiter
	loginName *limiter
	mapIP     *limiter
	nameKey   []byte // keys login names so the limiter holds no e-mail address
}

func newLimiters(cfg *Config) *limiters {
	return &limiters{loginIP: newLimiter(cfg.LoginPerIP), loginName: newLimiter(cfg.LoginPerName),
		mapIP: newLimiter(cfg.MapPerIP), nameKey: deriveKey(cfg.Secret, "login-name-limit")}
}

// nameBucket is the limiter key of a login name: a MAC of the normalised
// name, never the name itself.
func (l *limiters) nameBucket(email string) string {
	m := hmac.New(sha256.New, l.nameKey)
	m.Write([]byte(strings.ToLower(strings.TrimSpace(email))))
	return string(m.Sum(nil)[:16])
}

// throttle answers a 429 telling the client when to come back, and
// counts it by endpoint and by what was limited ("ip" or "name").
func (s *Server) throttle(w http.ResponseWriter, endpoint, by string, wait time.Duration, what string) error {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	s.m.throttled.WithLabelValues(endpoint, by).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return errorf(http.StatusTooManyRequests, "rate_limited", "%s; wait %d seconds (Retry-After) before trying again", what, secs)
}
