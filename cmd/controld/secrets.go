package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/stapes-relay/stapes/control/controlserver"
)

// loadSecret reads controld's secret (hex) from path, creating the file
// with a new random secret (mode 0600) when it does not exist.
func loadSecret(path string, log *slog.Logger) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("creating --secret-file: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating --secret-file: %w", err)
		}
		_, err = fmt.Fprintln(f, hex.EncodeToString(secret))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("writing --secret-file: %w", err)
		}
		log.Warn("created a new controld secret; every controld of this deployment must use this same file", "secret_file", path)
		return secret, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading --secret-file: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) < controlserver.MinSecretLen {
		return nil, fmt.Errorf("--secret-file %s must hold at least %d random bytes in hex (delete it to have a new one generated, which invalidates the signing keys sealed with the old one)", path, controlserver.MinSecretLen)
	}
	return secret, nil
}

// loadOperatorToken reads the operator token from path ("" when path is
// "").
func loadOperatorToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading --operator-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("--operator-token-file %s must hold one token of at least 16 characters without spaces", path)
	}
	return tok, nil
}
