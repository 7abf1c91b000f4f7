package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/token"
)

// keygen runs stapes keygen and fails the test unless it succeeds.
func keygen(t *testing.T, args ...string) {
	t.Helper()
	if code, _, stderr := stapes(t, append([]string{"keygen"}, args...)...); code != 0 {
		t.Fatalf("stapes keygen %q = %d, stderr %q", args, code, stderr)
	}
}

// mint runs stapes token and returns the token it printed.
func mint(t *testing.T, args ...string) []byte {
	t.Helper()
	code, stdout, stderr := stapes(t, append([]string{"token"}, args...)...)
	if code != 0 {
		t.Fatalf("stapes token %q = %d, stderr %q", args, code, stderr)
	}
	if stderr != "" || strings.Count(stdout, "\n") != 1 {
		t.Errorf("stapes token printed stdout %q, stderr %q; want one line on stdout", stdout, stderr)
	}
	return []byte(strings.TrimSuffix(stdout, "\n"))
}

func TestKeygenThenToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	keygen(t, "--out", dir)
	key := filepath.Join(dir, "signing-key.json")
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key: %v, mode %v; want 0600", err, fi.Mode())
	}

	before := time.Now()
	tok := mint(t, "--key", key, "--tenant", "t1", "--subject", "c-42", "--role", "clinician",
		"--session", "s-7", "--device", "SN123", "--model", "M9", "--ttl", "10m", "--id", "j-1")
	ring, err := token.LoadKeyring(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ring.Verify(tok, time.Now())
	if err != nil {
		t.Fatalf("Verify() error = %v", err)
	}
	signer, _ := token.LoadSigner(key)
	want := token.Claims{Tenant: "t1", Subject: "c-42", Role: "clinician", Session: "s-7", Device: "SN123",
		Model: "M9", ID: "j-1", KeyID: signer.KeyID(), IssuedAt: got.IssuedAt, Expiry: got.IssuedAt + 600}
	if got != want {
		t.Errorf("claims = %+v, want %+v", got, want)
	}
	if got.IssuedAt < before.Unix() || got.IssuedAt > time.Now().Unix() {
		t.Errorf("iat = %d, want about now", got.IssuedAt)
	}

	// Without --id, every token gets its own random jti.
	a, _ := ring.Verify(mint(t, "--key", key, "--tenant", "t1", "--subject", "p-1", "--role", "patient", "--session", "s-7"), time.Now())
	b, _ := ring.Verify(mint(t, "--key", key, "--tenant", "t1", "--subject", "p-1", "--role", "patient", "--session", "s-7"), time.Now())
	if a.ID == "" || a.ID == b.ID {
		t.Errorf("default jti = %q and %q, want distinct random ids", a.ID, b.ID)
	}
}

func TestKeygenRotation(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "signing-key.json")
	ringPath := filepath.Join(dir, "keyring.json")
	keygen(t, "--out", dir, "--kid", "first")
	first := mint(t, "--key", key, "--tenant", "t", "--subject", "s", "--role", "observer", "--session", "x")
	keyBefore, _ := os.ReadFile(key)
	ringBefore, _ := os.ReadFile(ringPath)

	// Refused without --force, and nothing changes.
	code, _, stderr := stapes(t, "keygen", "--out", dir, "--kid", "second")
	if code != 1 || !strings.Contains(stderr, "--force") || !strings.HasPrefix(stderr, "stapes: keygen: ") {
		t.Errorf("keygen over an existing key = %d, %q; want 1 and a hint at --force", code, stderr)
	}
	keyAfter, _ := os.ReadFile(key)
	ringAfter, _ := os.ReadFile(ringPath)
	if !bytes.Equal(keyBefore, keyAfter) || !bytes.Equal(ringBefore, ringAfter) {
		t.Errorf("a refused keygen changed the key files")
	}

	// With --force: a new signing key, added to the keyring beside the old.
	keygen(t, "--out", dir, "--kid", "second", "--force")
	second := mint(t, "--key", key, "--tenant", "t", "--subject", "s", "--role", "observer", "--session", "x")
	keys, err := token.ReadKeyringFile(ringPath)
	if err != nil {
		t.Fatal(err)
	}
	kids := make([]string, 0, len(keys))
	for kid := range keys {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	if !slices.Equal(kids, []string{"first", "second"}) {
		t.Errorf("keyring kids = %q, want first, second", kids)
	}
	ring, _ := token.LoadKeyring(ringPath)
	for _, tc := range []struct {
		tok []byte
		kid string
	}{{first, "first"}, {second, "second"}} {
		c, err := ring.Verify(tc.tok, time.Now())
		if err != nil || c.KeyID != tc.kid {
			t.Errorf("Verify(token of %s) = kid %q, %v", tc.kid, c.KeyID, err)
		}
	}
	ring.Revoke("first")
	if _, err := ring.Verify(first, time.Now()); !errors.Is(err, token.ErrRevoked) {
		t.Errorf("Verify(revoked) error = %v, want %v", err, token.ErrRevoked)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("key directory holds %d entries, want 2 (no temporary files)", len(entries))
	}

	// A kid already in the keyring with another key is refused.
	code, _, stderr = stapes(t, "keygen", "--out", dir, "--kid", "first", "--force")
	if code != 1 || !strings.Contains(stderr, "already in") {
		t.Errorf("keygen reusing a kid = %d, %q; want 1, already in", code, stderr)
	}
}

func TestTokenFlagErrors(t *testing.T) {
	dir := t.TempDir()
	keygen(t, "--out", dir)
	key := filepath.Join(dir, "signing-key.json")
	base := map[string]string{"key": key, "tenant": "t", "subject": "s", "role": "clinician", "session": "x"}
	args := func(over map[string]string) []string {
		a := []string{"token"}
		for _, f := range []string{"key", "tenant", "subject", "role", "session", "device", "model", "ttl", "id"} {
			v, ok := over[f]
			if !ok {
				v, ok = base[f]
			}
			if ok && v != "-" {
				a = append(a, "--"+f, v)
			}
		}
		return a
	}
	tests := []struct {
		name     string
		over     map[string]string // "-" drops a base flag
		wantCode int
		wantErr  string
	}{
		{name: "bad role", over: map[string]string{"role": "admin"}, wantCode: 2, wantErr: "stapes: token: --role must be clinician, patient or observer\n"},
		{name: "missing key", over: map[string]string{"key": "-"}, wantCode: 2, wantErr: "stapes: token: --key is required\n"},
		{name: "missing tenant", over: map[string]string{"tenant": "-"}, wantCode: 2, wantErr: "--tenant is required"},
		{name: "missing subject", over: map[string]string{"subject": "-"}, wantCode: 2, wantErr: "--subject is required"},
		{name: "missing role", over: map[string]string{"role": "-"}, wantCode: 2, wantErr: "--role is required"},
		{name: "missing session", over: map[string]string{"session": "-"}, wantCode: 2, wantErr: "--session is required"},
		{name: "device without model", over: map[string]string{"device": "SN1"}, wantCode: 2, wantErr: "--device and --model go together"},
		{name: "zero ttl", over: map[string]string{"ttl": "0s"}, wantCode: 2, wantErr: "--ttl must be positive"},
		{name: "ttl too long", over: map[string]string{"ttl": "25h"}, wantCode: 2, wantErr: "at most 24h"},
		{name: "ttl not a duration", over: map[string]string{"ttl": "soon"}, wantCode: 2, wantErr: "invalid value"},
		{name: "id too long", over: map[string]string{"id": strings.Repeat("j", token.MaxIDLen+1)}, wantCode: 2, wantErr: "--id must be at most 128 bytes"},
		{name: "key file missing", over: map[string]string{"key": filepath.Join(dir, "none.json")}, wantCode: 1, wantErr: "no such file"},
		{name: "key file is the keyring", over: map[string]string{"key": filepath.Join(dir, "keyring.json")}, wantCode: 1, wantErr: "stapes: token: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := stapes(t, args(tt.over)...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tt.wantCode, tt.wantErr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing on failure", stdout)
			}
		})
	}
}

func TestKeygenFlagErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no --out", args: []string{"keygen"}, wantErr: "stapes: keygen: --out is required"},
		{name: "kid too long", args: []string{"keygen", "--out", t.TempDir(), "--kid", strings.Repeat("k", 129)}, wantErr: "--kid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := stapes(t, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.wantErr)
			}
		})
	}
}
