package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignerFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing-key.json")
	kid, priv, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSignerFile(path, kid, priv); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %v, want 0600", got)
	}
	s, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != kid || !bytes.Equal(s.Public(), priv.Public().(ed25519.PublicKey)) {
		t.Errorf("LoadSigner() = %q %x, want %q %x", s.KeyID(), s.Public(), kid, priv.Public())
	}

	// A second write must fail and leave the first key in place.
	before, _ := os.ReadFile(path)
	_, other, _ := GenerateKey(nil)
	err = WriteSignerFile(path, "other", other)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("WriteSignerFile(existing) error = %v, want %v", err, ErrExists)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("WriteSignerFile(existing) changed the file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries after a refused write, want 1 (no temporary files left)", len(entries))
	}
}

func TestGenerateKey(t *testing.T) {
	kid, priv, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if want := KeyIDFor(priv.Public().(ed25519.PublicKey)); kid != want || len(kid) != 16 {
		t.Errorf("kid = %q, want %q (16 hex digits)", kid, want)
	}
	kid2, _, _ := GenerateKey(nil)
	if kid2 == kid {
		t.Errorf("two keys got the same kid %q", kid)
	}
	if _, _, err := GenerateKey(bytes.NewReader(nil)); err == nil {
		t.Errorf("GenerateKey(empty reader) succeeded")
	}
}

func TestKeyringFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	a, b := testSigner(t, 1), testSigner(t, 2)
	if err := WriteKeyringFile(path, map[string]ed25519.PublicKey{a.KeyID(): a.Public()}); err != nil {
		t.Fatal(err)
	}
	// Rotation rewrites the file with one key more.
	keys, err := ReadKeyringFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys[b.KeyID()] = b.Public()
	if err := WriteKeyringFile(path, keys); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
	}
	ring, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ring.KeyIDs(), ","); got != "test-1,test-2" {
		t.Errorf("KeyIDs() = %s, want test-1,test-2", got)
	}
	for _, s := range []*Signer{a, b} {
		if _, err := ring.Verify(mustSign(t, s, validClaims()), now); err != nil {
			t.Errorf("Verify(token of %s) error = %v", s.KeyID(), err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	_, priv := testKey(1)
	pub := priv.Public().(ed25519.PublicKey)
	std := base64.StdEncoding.EncodeToString
	mismatched := bytes.Clone(priv)
	mismatched[63] ^= 1
	tests := []struct {
		name    string
		content string
		signer  bool // LoadSigner, else LoadKeyring
		ok      bool
	}{
		{name: "signer", content: `{"kid":"a","private_key":"` + std(priv) + `"}`, signer: true, ok: true},
		{name: "signer from seed", content: `{"kid":"a","private_key":"` + std(priv.Seed()) + `"}`, signer: true, ok: true},
		{name: "signer mismatched halves", content: `{"kid":"a","private_key":"` + std(mismatched) + `"}`, signer: true},
		{name: "signer short key", content: `{"kid":"a","private_key":"` + std(priv[:20]) + `"}`, signer: true},
		{name: "signer no kid", content: `{"private_key":"` + std(priv) + `"}`, signer: true},
		{name: "signer not base64", content: `{"kid":"a","private_key":"*` + std(priv) + `"}`, signer: true},
		{name: "signer unknown field", content: `{"kid":"a","private_key":"` + std(priv) + `","public_key":""}`, signer: true},
		{name: "signer trailing data", content: `{"kid":"a","private_key":"` + std(priv) + `"} {}`, signer: true},
		{name: "keyring given to LoadSigner", content: `{"keys":[{"kid":"a","public_key":"` + std(pub) + `"}]}`, signer: true},
		{name: "keyring", content: `{"keys":[{"kid":"a","public_key":"` + std(pub) + `"}]}`, ok: true},
		{name: "keyring empty", content: `{"keys":[]}`},
		{name: "keyring duplicate kid", content: `{"keys":[{"kid":"a","public_key":"` + std(pub) + `"},{"kid":"a","public_key":"` + std(pub) + `"}]}`},
		{name: "keyring short key", content: `{"keys":[{"kid":"a","public_key":"` + std(pub[:31]) + `"}]}`},
		{name: "keyring wrong type", content: `{"keys":{"kid":"a"}}`},
		{name: "keyring truncated", content: `{"keys":[{"kid":"a"`},
		{name: "signer given to LoadKeyring", content: `{"kid":"a","private_key":"` + std(priv) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			if tt.signer {
				_, err = LoadSigner(path)
			} else {
				_, err = LoadKeyring(path)
			}
			if (err == nil) != tt.ok {
				t.Fatalf("load error = %v, want ok=%v", err, tt.ok)
			}
			if err == nil {
				return
			}
			if !strings.HasPrefix(err.Error(), "token: ") {
				t.Errorf("error %q lacks the token: prefix", err)
			}
			if strings.Contains(err.Error(), std(priv)[:12]) || strings.Contains(err.Error(), std(priv.Seed())[:12]) {
				t.Errorf("error %q quotes key material", err)
			}
		})
	}
	if _, err := LoadSigner(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadSigner(missing) error = %v, want %v", err, os.ErrNotExist)
	}
}
