package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxFileSize bounds the key files this package reads.
const maxFileSize = 1 << 20

// signerFile is the on-disk form of a signing key.
type signerFile struct {
	KID        string `json:"kid"`
	PrivateKey []byte `json:"private_key"` // 64-byte Ed25519 private key (seed || public), standard base64
}

// keyringFile is the on-disk form of a set of public keys.
type keyringFile struct {
	Keys []keyringEntry `json:"keys"`
}

type keyringEntry struct {
	KID       string `json:"kid"`
	PublicKey []byte `json:"public_key"` // 32 bytes, standard base64
}

// WriteSignerFile writes a signing key to path as
// {"kid":...,"private_key":"<base64>"} with mode 0600. It never replaces an
// existing file: if path exists it fails with an error wrapping ErrExists.
// The file appears complete or not at all.
func WriteSignerFile(path string, kid string, priv ed25519.PrivateKey) error {
	if err := checkKID(kid); err != nil {
		return err
	}
	if err := checkPrivate(priv); err != nil {
		return err
	}
	data, err := json.MarshalIndent(signerFile{KID: kid, PrivateKey: priv}, "", "  ")
	if err != nil {
		return fmt.Errorf("token: write signing key: %w", err)
	}
	return writeFile(path, append(data, '\n'), 0o600, false)
}

// LoadSigner reads a file written by WriteSignerFile and returns its Signer.
// A 32-byte seed is accepted in place of the 64-byte private key.
func LoadSigner(path string) (*Signer, error) {
	var f signerFile
	if err := readJSON(path, &f); err != nil {
		return nil, err
	}
	priv := ed25519.PrivateKey(f.PrivateKey)
	if len(f.PrivateKey) == ed25519.SeedSize {
		priv = ed25519.NewKeyFromSeed(f.PrivateKey)
	}
	s, err := NewSigner(f.KID, priv)
	if err != nil {
		return nil, fmt.Errorf("token: load signing key %s: %w", path, err)
	}
	return s, nil
}

// WriteKeyringFile writes public keys to path as
// {"keys":[{"kid":...,"public_key":"<base64>"}]}, sorted by kid, with mode
// 0644. It replaces an existing file atomically (rotation rewrites the
// keyring with one key more).
func WriteKeyringFile(path string, keys map[string]ed25519.PublicKey) error {
	var f keyringFile
	for kid, pub := range keys {
		if err := checkKID(kid); err != nil {
			return err
		}
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("token: key id %q: public key is %d bytes, want %d", kid, len(pub), ed25519.PublicKeySize)
		}
		f.Keys = append(f.Keys, keyringEntry{KID: kid, PublicKey: pub})
	}
	slices.SortFunc(f.Keys, func(a, b keyringEntry) int { return strings.Compare(a.KID, b.KID) })
	if f.Keys == nil {
		f.Keys = []keyringEntry{}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("token: write keyring: %w", err)
	}
	return writeFile(path, append(data, '\n'), 0o644, true)
}

// ReadKeyringFile reads the public keys of a file written by
// WriteKeyringFile. A kid listed twice is an error.
func ReadKeyringFile(path string) (map[string]ed25519.PublicKey, error) {
	var f keyringFile
	if err := readJSON(path, &f); err != nil {
		return nil, err
	}
	keys := make(map[string]ed25519.PublicKey, len(f.Keys))
	for i, e := range f.Keys {
		if err := checkKID(e.KID); err != nil {
			return nil, fmt.Errorf("token: load keyring %s: key %d: %w", path, i, err)
		}
		if len(e.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("token: load keyring %s: key id %q: public key is %d bytes, want %d", path, e.KID, len(e.PublicKey), ed25519.PublicKeySize)
		}
		if _, dup := keys[e.KID]; dup {
			return nil, fmt.Errorf("token: load keyring %s: key id %q listed twice", path, e.KID)
		}
		keys[e.KID] = ed25519.PublicKey(e.PublicKey)
	}
	return keys, nil
}

// LoadKeyring reads a file written by WriteKeyringFile into a new Keyring.
// A file with no keys is an error: such a keyring would refuse every token.
func LoadKeyring(path string) (*Keyring, error) {
	keys, err := ReadKeyringFile(path)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("token: load keyring %s: no keys", path)
	}
	k := NewKeyring()
	for kid, pub := range keys {
		if err := k.Add(kid, pub); err != nil {
			return nil, fmt.Errorf("token: load keyring %s: %w", path, err)
		}
	}
	return k, nil
}

// readJSON decodes one JSON object from path into v, refusing unknown
// fields (these files are written by this package) and trailing data.
func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("token: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("token: read %s: larger than %d bytes", path, maxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// The decoder's message may quote key material; keep only its kind.
		return fmt.Errorf("token: read %s: %s", path, jsonErrorKind(err))
	}
	if dec.More() {
		return fmt.Errorf("token: read %s: data after the JSON object", path)
	}
	return nil
}

// jsonErrorKind describes a decode error without the input it may quote.
func jsonErrorKind(err error) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		b64 base64.CorruptInputError
	)
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type", typ.Field)
	case errors.As(err, &b64):
		return "a key is not valid base64"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	default:
		return "invalid JSON (unknown field?)"
	}
}

// writeFile writes data to path with mode perm, through a temporary file in
// the same directory that is synced and then moved into place, so path
// never holds a partial file. With replace false an existing path is kept
// and the error wraps ErrExists; with replace true it is replaced
// atomically.
func writeFile(path string, data []byte, perm fs.FileMode, replace bool) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if replace {
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	} else {
		// A hard link fails if path exists, so no check-then-write race.
		if err := os.Link(tmp.Name(), path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("token: write %s: %w", path, ErrExists)
			}
			return fmt.Errorf("token: %w", err)
		}
		os.Remove(tmp.Name())
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename or link in dir durable, where the platform allows.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}
