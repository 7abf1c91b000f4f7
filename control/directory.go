package control

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/token"
)

// DirectoryConfig configures a Directory. Zero fields take the defaults in
// their comments.
type DirectoryConfig struct {
	// URL is controld's base URL. Required.
	URL string
	// Credential is the node credential (bearer). Required.
	Credential string
	// Addresses this relay publishes: "ws" → wss://host:port/v1/connect,
	// "quic" → quic://host:port. Required.
	Addresses map[string]string
	// Version is the relay's software version.
	Version string
	// Capacity is how many connections the relay takes (0: unstated).
	Capacity int
	// Keyring receives the token verification keys controld serves:
	// new kids are added, revoked ones revoked. Required.
	Keyring *token.Keyring
	// CacheFile, if set, keeps the last fetched (unrevoked) keys so a relay
	// restarted while controld is down still admits sessions.
	CacheFile string
	// Load and Draining report the relay's state for heartbeats.
	Load     func() int
	Draining func() bool
	// Sessions, if set, lists the ids of the sessions active on the relay;
	// each heartbeat sends them (in several heartbeats of at most
	// MaxHeartbeatSessions when there are more) and controld answers those
	// that are over. Called from the heartbeat; it must not block.
	Sessions func() []string
	// Ended, if set, is called after a heartbeat with the ids of the
	// sessions controld says are over (ended or expired) — never with an
	// empty list. The relay closes them. Called from the heartbeat's
	// goroutine (Run's); it must not block for long.
	Ended func(ids []string)
	// Interval between heartbeats and key refreshes. Default 10s, or what
	// controld asks for.
	Interval time.Duration
	// HTTPClient, default a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger, default slog.Default().
	Logger *slog.Logger
}

// Directory keeps a relay registered with controld: it registers, sends
// heartbeats with load and draining state, and keeps the token keyring in
// step with controld's signing keys. When controld is unreachable the relay
// goes on with what it has.
type Directory struct {
	cfg DirectoryConfig
	log *slog.Logger

	mu       sync.Mutex // guards relayMap
	relayMap json.RawMessage
}

// NewDirectory validates cfg.
func NewDirectory(cfg DirectoryConfig) (*Directory, error) {
	switch {
	case !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://"):
		return nil, fmt.Errorf("%w: URL must be http(s)://host:port", ErrConfig)
	case cfg.Credential == "":
		return nil, fmt.Errorf("%w: Credential is required", ErrConfig)
	case len(cfg.Addresses) == 0:
		return nil, fmt.Errorf("%w: Addresses are required", ErrConfig)
	case cfg.Keyring == nil:
		return nil, fmt.Errorf("%w: Keyring is required", ErrConfig)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Load == nil {
		cfg.Load = func() int { return 0 }
	}
	if cfg.Draining == nil {
		cfg.Draining = func() bool { return false }
	}
	return &Directory{cfg: cfg, log: cfg.Logger.With("component", "directory")}, nil
}

// LoadCache adds the cached keys to the keyring, if there is a cache.
func (d *Directory) LoadCache() error {
	if d.cfg.CacheFile == "" {
		return nil
	}
	keys, err := token.ReadKeyringFile(d.cfg.CacheFile)
	if err != nil {
		return err
	}
	for kid, pub := range keys {
		if err := d.cfg.Keyring.Add(kid, pub); err != nil && !errors.Is(err, token.ErrExists) {
			return err
		}
	}
	return nil
}

// Run registers, then heartbeats and refreshes keys until ctx ends.
func (d *Directory) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for {
		err := d.Register(ctx)
		if err == nil {
			break
		}
		d.log.Warn("registering with controld failed; retrying", "err", err)
		if !sleep(ctx, backoff/2+rand.N(backoff/2)) {
			return ctx.Err()
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	if err := d.Heartbeat(ctx); err != nil && ctx.Err() == nil {
		d.log.Warn("heartbeat to controld failed", "err", err)
	}
	for {
		if err := d.RefreshKeys(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("refreshing token keys failed; keeping the current ones", "err", err)
		}
		if err := d.RefreshMap(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("refreshing the relay map failed; keeping the last one", "err", err)
		}
		if !sleep(ctx, d.cfg.Interval) {
			return ctx.Err()
		}
		if err := d.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("heartbeat to controld failed", "err", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Register announces the relay's addresses, version and capacity, then
// fetches the keys.
func (d *Directory) Register(ctx context.Context) error {
	req := map[string]any{"addresses": d.cfg.Addresses, "version": d.cfg.Version}
	if d.cfg.Capacity > 0 {
		req["capacity"] = d.cfg.Capacity
	}
	var ans struct {
		ID                string `json:"id"`
		Region            string `json:"region"`
		HeartbeatInterval int    `json:"heartbeat_interval_seconds"`
	}
	if err := d.call(ctx, http.MethodPost, "/v1/relay/register", req, &ans); err != nil {
		return err
	}
	if ans.HeartbeatInterval > 0 {
		d.cfg.Interval = time.Duration(ans.HeartbeatInterval) * time.Second
	}
	d.log.Info("registered with controld", "relay", ans.ID, "region", ans.Region, "heartbeat", d.cfg.Interval)
	return d.RefreshKeys(ctx)
}

// MaxHeartbeatSessions is the most session ids one heartbeat carries
// (controld refuses more).
const MaxHeartbeatSessions = 20_000

type heartbeatAnswer struct {
	Ended []string `json:"ended"`
}

// Heartbeat reports load and draining state and, with
// DirectoryConfig.Sessions, the active sessions; it then passes the ones
// controld says are over to DirectoryConfig.Ended.
func (d *Directory) Heartbeat(ctx context.Context) error {
	req := map[string]any{"load": d.cfg.Load(), "draining": d.cfg.Draining()}
	var ids []string
	if d.cfg.Sessions != nil {
		ids = d.cfg.Sessions()
	}
	var ended []string
	for first := true; first || len(ids) > 0; first = false {
		chunk := ids[:min(len(ids), MaxHeartbeatSessions)]
		ids = ids[len(chunk):]
		if len(chunk) > 0 {
			req["sessions"] = chunk
		}
		var ans heartbeatAnswer
		if err := d.call(ctx, http.MethodPost, "/v1/relay/heartbeat", req, &ans); err != nil {
			return err
		}
		ended = append(ended, ans.Ended...)
	}
	if len(ended) > 0 && d.cfg.Ended != nil {
		d.cfg.Ended(ended)
	}
	return nil
}

// SessionEnded asks controld whether a session is over (ended or
// expired), for a relay admitting a token of a session it does not hold
// yet. A session controld does not know is ErrUnknownSession; when
// controld cannot be reached the error says so and the relay decides.
func (d *Directory) SessionEnded(ctx context.Context, tenant, session string) (bool, error) {
	var ans struct {
		Ended bool `json:"ended"`
	}
	path := "/v1/relay/sessions/" + url.PathEscape(tenant) + "/" + url.PathEscape(session)
	err := d.call(ctx, http.MethodGet, path, nil, &ans)
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return false, fmt.Errorf("%w: %w", ErrUnknownSession, err)
	}
	return ans.Ended, err
}

// RefreshKeys brings the keyring in step with controld's keys.
func (d *Directory) RefreshKeys(ctx context.Context) error {
	var ans struct {
		Keys []struct {
			KID       string `json:"kid"`
			PublicKey string `json:"public_key"`
			Revoked   bool   `json:"revoked"`
		} `json:"keys"`
	}
	if err := d.call(ctx, http.MethodGet, "/v1/relay/keys", nil, &ans); err != nil {
		return err
	}
	live := map[string]ed25519.PublicKey{}
	for _, k := range ans.Keys {
		if k.Revoked {
			d.cfg.Keyring.Revoke(k.KID)
			continue
		}
		pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("control: key %s: not a base64 Ed25519 public key", k.KID)
		}
		if err := d.cfg.Keyring.Add(k.KID, pub); err != nil && !errors.Is(err, token.ErrExists) {
			return fmt.Errorf("control: key %s: %w", k.KID, err)
		}
		live[k.KID] = pub
	}
	if d.cfg.CacheFile != "" && len(live) > 0 {
		if err := token.WriteKeyringFile(d.cfg.CacheFile, live); err != nil {
			d.log.Warn("writing the key cache failed", "err", err)
		}
	}
	return nil
}

// RefreshMap fetches the relay map (regions, relays with health and
// load, feature flags) that this relay serves to its clients.
func (d *Directory) RefreshMap(ctx context.Context) error {
	var m json.RawMessage
	if err := d.call(ctx, http.MethodGet, "/v1/relay/map", nil, &m); err != nil {
		return err
	}
	d.mu.Lock()
	d.relayMap = m
	d.mu.Unlock()
	return nil
}

// RelayMap returns the last fetched relay map (JSON), or nil.
func (d *Directory) RelayMap() json.RawMessage {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.relayMap
}

// maxAnswer bounds an answer of controld (a heartbeat's ended list may
// name MaxHeartbeatSessions ids of up to 128 bytes).
const maxAnswer = 8 << 20

// statusError is an HTTP status controld answered other than 200.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

// call sends a JSON request with the node credential and decodes the answer.
func (d *Directory) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(d.cfg.URL, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+d.cfg.Credential)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("control: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("control: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s %s: %w", ErrRejected, method, path, &statusError{resp.StatusCode})
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("control: %s %s: bad answer: %w", method, path, err)
		}
	}
	return nil
}

// DeviceConfig asks controld for a device's applied config version and
// parameters (relay.DeviceSource).
func (d *Directory) DeviceConfig(ctx context.Context, tenant, serial string) (uint64, map[string]int64, error) {
	var ans struct {
		Version uint64           `json:"version"`
		Params  map[string]int64 `json:"params"`
	}
	path := "/v1/relay/devices/" + url.PathEscape(tenant) + "/" + url.PathEscape(serial) + "/config"
	if err := d.call(ctx, http.MethodGet, path, nil, &ans); err != nil {
		return 0, nil, err
	}
	return ans.Version, ans.Params, nil
}
