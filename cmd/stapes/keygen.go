package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stapes-relay/stapes/token"
)

// File names keygen writes in its --out directory.
const (
	signingKeyName = "signing-key.json"
	keyringName    = "keyring.json"
)

func init() {
	register(verb{
		name:    "keygen",
		summary: "create an Ed25519 token signing key and add its public key to the keyring",
		usage:   "--out DIR [--kid ID] [--force]",
		flags: func(fs *flag.FlagSet) runFunc {
			c := &keygenCmd{}
			fs.StringVar(&c.out, "out", "", "`DIR` to write "+signingKeyName+" (mode 0600) and "+keyringName+" to; created if missing (required)")
			fs.StringVar(&c.kid, "kid", "", "key `ID` (default: derived from the public key)")
			fs.BoolVar(&c.force, "force", false, "replace an existing signing key; its public key stays in the keyring")
			return c.run
		},
	})
}

type keygenCmd struct {
	out   string
	kid   string
	force bool
}

// run writes a new signing key. The keyring is written first: a signing key
// whose public key no keyring holds would mint tokens every relay refuses,
// while a public key without its signing key is harmless. An existing
// keyring keeps its keys, so tokens of the previous key stay valid until
// that key is taken out (rotation).
func (c *keygenCmd) run(ctx context.Context, e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	if c.out == "" {
		return usagef("--out is required")
	}
	kid, priv, err := token.GenerateKey(nil)
	if err != nil {
		return err
	}
	if c.kid != "" {
		kid = c.kid
	}
	if _, err := token.NewSigner(kid, priv); err != nil {
		return usagef("--kid: %v", err)
	}
	pub := priv.Public().(ed25519.PublicKey)

	if err := os.MkdirAll(c.out, 0o700); err != nil {
		return err
	}
	keyPath := filepath.Join(c.out, signingKeyName)
	ringPath := filepath.Join(c.out, keyringName)
	if _, err := os.Lstat(keyPath); err == nil && !c.force {
		return fmt.Errorf("%s: %w; pass --force to replace it", keyPath, token.ErrExists)
	}

	keys, err := token.ReadKeyringFile(ringPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		keys = map[string]ed25519.PublicKey{}
	case err != nil:
		return err
	}
	if old, ok := keys[kid]; ok && !bytes.Equal(old, pub) {
		return fmt.Errorf("key id %q is already in %s with another key; choose another --kid", kid, ringPath)
	}
	keys[kid] = pub
	if err := token.WriteKeyringFile(ringPath, keys); err != nil {
		return err
	}
	if err := writeSigningKey(keyPath, kid, priv, c.force); err != nil {
		return err
	}

	kids := make([]string, 0, len(keys))
	for k := range keys {
		kids = append(kids, k)
	}
	slices.Sort(kids)
	fmt.Fprintf(e.stdout, "signing key %s (kid %s)\n", keyPath, kid)
	fmt.Fprintf(e.stdout, "keyring     %s (kids %s)\n", ringPath, strings.Join(kids, ", "))
	return nil
}

// writeSigningKey writes the key to path; with replace it swaps out an
// existing file atomically (write beside it, then rename over it).
func writeSigningKey(path, kid string, priv ed25519.PrivateKey, replace bool) error {
	if !replace {
		return token.WriteSignerFile(path, kid, priv)
	}
	next := path + ".new"
	if err := os.Remove(next); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := token.WriteSignerFile(next, kid, priv); err != nil {
		return err
	}
	if err := os.Rename(next, path); err != nil {
		os.Remove(next)
		return err
	}
	return nil
}
