package turn

import (
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // RFC 5389 §15.4 long-term key; not our choice
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits of REST credentials.
const (
	// ExpiryLeeway tolerates clock skew between controld and the relay.
	ExpiryLeeway = 30 * time.Second
	// DefaultMaxTTL is the longest lifetime Mint accepts and Verify believes
	// when Credentials.MaxTTL is zero.
	DefaultMaxTTL = 24 * time.Hour
	// MinSecretLen is the shortest secret accepted, in bytes.
	MinSecretLen = 16
	// MaxSessionLen is the longest session id, as in storage.
	MaxSessionLen = 128
	// maxExpiryDigits bounds the expiry field (unix seconds fit in 19 digits).
	maxExpiryDigits = 19
)

// Credentials mints and verifies REST-style TURN credentials (the "TURN REST
// API" draft): username "<unix expiry>:<session>", password
// base64(HMAC-SHA1(secret, username)). Fields are read, never written; set
// them before use and do not change them while in use.
type Credentials struct {
	// Secrets are the shared secrets, newest first. Secrets[0] mints; all of
	// them verify, so a secret can be rotated in without breaking live
	// credentials. Each must be at least MinSecretLen bytes.
	Secrets [][]byte
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Ended reports whether a session has ended; such credentials are
	// refused. Required by the verifying side: nil makes every verification
	// fail with ErrNoSessionCheck (fail closed). Called on the request path:
	// it must be fast and safe for concurrent use.
	Ended func(session string) bool
	// MaxTTL is the longest lifetime minted or believed. Default: DefaultMaxTTL.
	MaxTTL time.Duration
}

func (c *Credentials) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Credentials) maxTTL() time.Duration {
	if c.MaxTTL > 0 {
		return c.MaxTTL
	}
	return DefaultMaxTTL
}

func (c *Credentials) checkSecrets() error {
	if len(c.Secrets) == 0 {
		return ErrNoSecrets
	}
	for i, s := range c.Secrets {
		if len(s) < MinSecretLen {
			return fmt.Errorf("%w: secret %d has %d bytes", ErrWeakSecret, i, len(s))
		}
	}
	return nil
}

// Mint returns a credential for session valid for ttl, under Secrets[0].
// The expiry is rounded down to the second, as the username carries it.
func (c *Credentials) Mint(session string, ttl time.Duration) (username, password string, expiry time.Time, err error) {
	if err := c.checkSecrets(); err != nil {
		return "", "", time.Time{}, fmt.Errorf("turn mint: %w", err)
	}
	if err := checkSession(session); err != nil {
		return "", "", time.Time{}, fmt.Errorf("turn mint: %w", err)
	}
	if ttl < time.Second || ttl > c.maxTTL() {
		return "", "", time.Time{}, fmt.Errorf("turn mint: %w: %v", ErrBadTTL, ttl)
	}
	expiry = c.now().Add(ttl).Truncate(time.Second)
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + session
	return username, password64(c.Secrets[0], username), expiry, nil
}

// password64 returns the password for username under secret.
func password64(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// longTermKey is MD5(username ":" realm ":" password), RFC 5389 §15.4.
func longTermKey(username, realm, password string) []byte {
	k := md5.Sum([]byte(username + ":" + realm + ":" + password)) //nolint:gosec
	return k[:]
}

// checkSession accepts 1..MaxSessionLen bytes of [A-Za-z0-9._~-]. The
// colon is excluded so the username splits one way only.
func checkSession(s string) error {
	if len(s) == 0 || len(s) > MaxSessionLen {
		return fmt.Errorf("%w: length %d", ErrBadSession, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-'
		if !ok {
			return fmt.Errorf("%w: byte %d", ErrBadSession, i)
		}
	}
	return nil
}

// parseUsername splits "<unix expiry>:<session>". The expiry is 1..19 ASCII
// digits (no sign, no spaces) and must fit an int64.
func parseUsername(username string) (expiry time.Time, session string, err error) {
	digits, session, ok := strings.Cut(username, ":")
	if !ok || len(digits) == 0 || len(digits) > maxExpiryDigits {
		return time.Time{}, "", ErrBadUsername
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return time.Time{}, "", ErrBadUsername
		}
	}
	secs, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return time.Time{}, "", ErrBadUsername
	}
	if err := checkSession(session); err != nil {
		return time.Time{}, "", err
	}
	return time.Unix(secs, 0), session, nil
}

// admit parses username and refuses it if expired, too far ahead or of an
// ended session. It checks the configuration first: it fails closed.
func (c *Credentials) admit(username string) (string, error) {
	if err := c.checkSecrets(); err != nil {
		return "", err
	}
	if c.Ended == nil {
		return "", ErrNoSessionCheck
	}
	expiry, session, err := parseUsername(username)
	if err != nil {
		return "", err
	}
	now := c.now()
	if now.After(expiry.Add(ExpiryLeeway)) {
		return "", ErrExpired
	}
	if expiry.After(now.Add(c.maxTTL() + ExpiryLeeway)) {
		return "", ErrExpiryTooFar
	}
	if c.Ended(session) {
		return "", ErrSessionEnded
	}
	return session, nil
}

// Keys admits username and returns the long-term key under every secret,
// in Secrets order, for the caller to test against MESSAGE-INTEGRITY.
func (c *Credentials) Keys(username, realm string) (keys [][]byte, session string, err error) {
	session, err = c.admit(username)
	if err != nil {
		return nil, "", fmt.Errorf("turn keys: %w", err)
	}
	keys = make([][]byte, len(c.Secrets))
	for i, s := range c.Secrets {
		keys[i] = longTermKey(username, realm, password64(s, username))
	}
	return keys, session, nil
}

// KeyFor admits username and returns the first key under which check passes;
// check verifies the request's MESSAGE-INTEGRITY with a key (in constant
// time: hmac.Equal). ErrBadIntegrity if none does.
func (c *Credentials) KeyFor(username, realm string, check func(key []byte) bool) (key []byte, session string, err error) {
	keys, session, err := c.Keys(username, realm)
	if err != nil {
		return nil, "", err
	}
	for _, k := range keys {
		if check(k) {
			return k, session, nil
		}
	}
	return nil, "", fmt.Errorf("turn keys: %w", ErrBadIntegrity)
}

// Verify admits username and returns the long-term key under Secrets[0], the
// shape pion's auth hook wants. During a rotation it is right only for
// credentials minted under the newest secret; use KeyFor where the raw
// message is at hand.
func (c *Credentials) Verify(username, realm string) (key []byte, session string, err error) {
	session, err = c.admit(username)
	if err != nil {
		return nil, "", fmt.Errorf("turn verify: %w", err)
	}
	return longTermKey(username, realm, password64(c.Secrets[0], username)), session, nil
}

// CheckPassword admits username and compares password, in constant time,
// with the password under each secret (for paths that see the password, such
// as an admin probe). It returns the session.
func (c *Credentials) CheckPassword(username, password string) (session string, err error) {
	session, err = c.admit(username)
	if err != nil {
		return "", fmt.Errorf("turn check password: %w", err)
	}
	match := 0
	for _, s := range c.Secrets {
		if hmac.Equal([]byte(password64(s, username)), []byte(password)) {
			match = 1 // no early exit: time does not tell which secret matched
		}
	}
	if match == 0 {
		return "", fmt.Errorf("turn check password: %w", ErrBadPassword)
	}
	return session, nil
}
