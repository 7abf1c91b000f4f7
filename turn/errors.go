package turn

import "errors"

// Sentinel errors. Wrapped with %w and the operation; test with errors.Is.
var (
	// ErrPeerDenied: the peer policy refused an address. The concrete error is
	// a *PeerError naming the class.
	ErrPeerDenied = errors.New("turn: peer address denied")
	// ErrBadPolicy: a PeerPolicyConfig holds an invalid prefix or address.
	ErrBadPolicy = errors.New("turn: invalid peer policy")

	// ErrNoSecrets: Credentials has no secret to mint or verify with.
	ErrNoSecrets = errors.New("turn: no credential secrets")
	// ErrWeakSecret: a secret is shorter than MinSecretLen.
	ErrWeakSecret = errors.New("turn: credential secret too short")
	// ErrBadTTL: Mint was asked for a non-positive lifetime or one above MaxTTL.
	ErrBadTTL = errors.New("turn: invalid credential lifetime")
	// ErrBadUsername: a username is not "expiry:session".
	ErrBadUsername = errors.New("turn: malformed username")
	// ErrBadSession: a session id is empty, too long or has characters outside
	// [A-Za-z0-9._~-].
	ErrBadSession = errors.New("turn: malformed session id")
	// ErrExpired: the credential's expiry (plus ExpiryLeeway) has passed.
	ErrExpired = errors.New("turn: credential expired")
	// ErrExpiryTooFar: the credential claims an expiry further ahead than
	// MaxTTL allows; no credential we mint looks like that.
	ErrExpiryTooFar = errors.New("turn: credential expiry too far ahead")
	// ErrSessionEnded: the session the credential names has ended.
	ErrSessionEnded = errors.New("turn: session ended")
	// ErrNoSessionCheck: Credentials.Ended is nil, so Verify cannot tell
	// whether the session still runs; it fails closed.
	ErrNoSessionCheck = errors.New("turn: no session-ended check configured")
	// ErrBadPassword: a password does not match under any active secret.
	ErrBadPassword = errors.New("turn: wrong credential password")
	// ErrBadIntegrity: no candidate key passed the caller's integrity check.
	ErrBadIntegrity = errors.New("turn: message integrity check failed")
)

// Server errors.
var (
	// ErrBadConfig: a Config is incomplete or inconsistent.
	ErrBadConfig = errors.New("turn: invalid server config")
	// ErrClosed: the Server is closed.
	ErrClosed = errors.New("turn: server closed")
	// ErrQuota: an allocation would exceed a quota; the concrete error names
	// which (QuotaError).
	ErrQuota = errors.New("turn: allocation quota reached")
	// ErrBadFrame: a TCP/TLS client sent bytes that are neither STUN nor
	// ChannelData, or a STUN request larger than maxRequest.
	ErrBadFrame = errors.New("turn: malformed TURN frame")
	// ErrListen: ListenUDP could not open its socket group.
	ErrListen = errors.New("turn: listen")
)
