// Package password hashes login passwords with argon2id (RFC 9106), a
// memory-hard function, into the PHC string format stored in
// clinicians.password_hash:
//
//	$argon2id$v=19$m=65536,t=2,p=2$<salt, base64>$<hash, base64>
//
// Check reads the parameters from the stored string, so raising the
// defaults later leaves existing hashes valid (NeedsRehash tells when to
// re-hash at the next login). It lives apart from pgstore so that the API
// can hash without linking a database driver.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

var (
	// ErrMalformed: a stored hash is not an argon2id PHC string this
	// package accepts (or its parameters are out of bounds).
	ErrMalformed = errors.New("password: malformed hash")
	// ErrTooLong: the password is longer than MaxLen bytes.
	ErrTooLong = errors.New("password: too long")
)

// MaxLen is the longest password accepted, in bytes.
const MaxLen = 1024

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// Default: 64 MiB, 2 passes, 2 lanes (RFC 9106's second recommended
// option, with 2 passes instead of 3): about 160 ms per hash on the 2-core
// development machine (BenchmarkHashDefault).
var Default = Params{Memory: 64 << 10, Time: 2, Threads: 2, SaltLen: 16, KeyLen: 32}

// Bounds on parameters read back from a stored hash, so a corrupted or
// hostile row cannot make Check allocate gigabytes or spin for minutes.
const (
	maxMemory  = 1 << 20 // 1 GiB
	maxTime    = 20
	maxKeyLen  = 64
	maxSaltLen = 64
)

var b64 = base64.RawStdEncoding

// Hash hashes password with the Default parameters.
func Hash(password string) (string, error) { return HashWith(Default, password) }

// HashWith hashes password with p and a random salt.
func HashWith(p Params, password string) (string, error) {
	if len(password) > MaxLen {
		return "", ErrTooLong
	}
	if p.Memory < 8*uint32(p.Threads) || p.Time < 1 || p.Threads < 1 || p.SaltLen < 8 || p.KeyLen < 16 ||
		p.Memory > maxMemory || p.Time > maxTime || p.SaltLen > maxSaltLen || p.KeyLen > maxKeyLen {
		return "", fmt.Errorf("password: parameters out of bounds: %+v", p)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Check reports whether password matches the stored hash, comparing in
// constant time. A malformed hash is an error wrapping ErrMalformed; a
// wrong or too long password is (false, nil).
func Check(hash, password string) (bool, error) {
	p, salt, key, err := decode(hash)
	if err != nil {
		return false, err
	}
	if len(password) > MaxLen {
		return false, nil
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// NeedsRehash reports whether hash was made with weaker parameters than
// Default (re-hash the password at the next successful login).
func NeedsRehash(hash string) bool {
	p, _, _, err := decode(hash)
	return err != nil || p.Memory < Default.Memory || p.Time < Default.Time
}

func decode(hash string) (Params, []byte, []byte, error) {
	var p Params
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, ErrMalformed
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("%w: version", ErrMalformed)
	}
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil || n != 3 {
		return p, nil, nil, fmt.Errorf("%w: parameters", ErrMalformed)
	}
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return p, nil, nil, fmt.Errorf("%w: encoding", ErrMalformed)
	}
	if p.Threads < 1 || p.Time < 1 || p.Time > maxTime || p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory ||
		len(salt) < 8 || len(salt) > maxSaltLen || len(key) < 16 || len(key) > maxKeyLen {
		return p, nil, nil, fmt.Errorf("%w: parameters out of bounds", ErrMalformed)
	}
	return p, salt, key, nil
}
