package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	signer := testSigner(t, 1)
	revoked := testSigner(t, 2)
	stranger := testSigner(t, 3) // its key is not in the keyring
	ring := NewKeyring()
	for _, s := range []*Signer{signer, revoked} {
		if err := ring.Add(s.KeyID(), s.Public()); err != nil {
			t.Fatal(err)
		}
	}
	ring.Revoke(revoked.KeyID())
	_, priv := testKey(1)
	kid := signer.KeyID()

	valid := mustSign(t, signer, validClaims())
	parts := strings.Split(string(valid), ".")
	claimsJSON, _ := json.Marshal(validClaims())
	// with returns the valid claim set as JSON with one member replaced
	// (raw JSON value) or removed (empty value).
	with := func(name, value string) string {
		var m map[string]json.RawMessage
		json.Unmarshal(claimsJSON, &m)
		if value == "" {
			delete(m, name)
		} else {
			m[name] = json.RawMessage(value)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	claimsAt := func(f func(*Claims)) Claims { c := validClaims(); f(&c); return c }
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	hs256 := func() []byte {
		signed := enc(`{"alg":"HS256","typ":"JWT","kid":"`+kid+`"}`) + "." + parts[1]
		mac := hmac.New(sha256.New, signer.Public())
		mac.Write([]byte(signed))
		return []byte(signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)))
	}

	tests := []struct {
		name string
		tok  []byte
		now  time.Time // zero: now
		want error     // nil: accepted
	}{
		{name: "valid", tok: valid},
		{name: "valid patient without device", tok: mustSign(t, signer, claimsAt(func(c *Claims) { c.Role, c.Device, c.Model = RolePatient, "", "" }))},
		{name: "unknown claim ignored", tok: signRaw(priv, edHeader(kid), with("x-extra", `{"nested":[1,2]}`))},
		{name: "header without typ", tok: signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`"}`, string(claimsJSON))},
		{name: "header with unknown member", tok: signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`","x5t":"abc"}`, string(claimsJSON))},

		// time
		{name: "expired", tok: valid, now: now.Add(2 * time.Hour), want: ErrExpired},
		{name: "expired just past leeway", tok: valid, now: now.Add(time.Hour + Leeway), want: ErrExpired},
		{name: "expired within leeway", tok: valid, now: now.Add(time.Hour + Leeway - time.Second)},
		{name: "not yet valid", tok: mustSign(t, signer, claimsAt(func(c *Claims) { c.NotBefore = now.Unix() + 31 })), want: ErrNotYetValid},
		{name: "nbf within leeway", tok: mustSign(t, signer, claimsAt(func(c *Claims) { c.NotBefore = now.Unix() + 30 }))},
		{name: "nbf passed", tok: mustSign(t, signer, claimsAt(func(c *Claims) { c.NotBefore = now.Unix() - 60 }))},

		// header and algorithm
		{name: "alg none", tok: []byte(enc(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`) + "." + parts[1] + "."), want: ErrMalformed},
		{name: "alg none with signature", tok: []byte(enc(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`) + "." + parts[1] + "." + parts[2]), want: ErrMalformed},
		{name: "alg HS256 keyed with the public key", tok: hs256(), want: ErrMalformed},
		{name: "alg Ed25519 spelling", tok: signRaw(priv, `{"alg":"Ed25519","kid":"`+kid+`"}`, string(claimsJSON)), want: ErrMalformed},
		{name: "alg missing", tok: signRaw(priv, `{"typ":"JWT","kid":"`+kid+`"}`, string(claimsJSON)), want: ErrMalformed},
		{name: "alg duplicate", tok: signRaw(priv, `{"alg":"none","alg":"EdDSA","kid":"`+kid+`"}`, string(claimsJSON)), want: ErrMalformed},
		{name: "kid missing", tok: signRaw(priv, `{"alg":"EdDSA","typ":"JWT"}`, string(claimsJSON)), want: ErrMalformed},
		{name: "kid not a string", tok: signRaw(priv, `{"alg":"EdDSA","kid":1}`, string(claimsJSON)), want: ErrMalformed},
		{name: "kid null", tok: signRaw(priv, `{"alg":"EdDSA","kid":null}`, string(claimsJSON)), want: ErrMalformed},
		{name: "kid too long", tok: signRaw(priv, edHeader(strings.Repeat("k", MaxIDLen+1)), string(claimsJSON)), want: ErrMalformed},
		{name: "typ not JWT", tok: signRaw(priv, `{"alg":"EdDSA","typ":"at+jwt","kid":"`+kid+`"}`, string(claimsJSON)), want: ErrMalformed},
		{name: "crit present", tok: signRaw(priv, `{"alg":"EdDSA","kid":"`+kid+`","crit":["b64"],"b64":false}`, string(claimsJSON)), want: ErrMalformed},
		{name: "header not an object", tok: signRaw(priv, `["EdDSA"]`, string(claimsJSON)), want: ErrMalformed},
		{name: "header not JSON", tok: signRaw(priv, `alg=EdDSA`, string(claimsJSON)), want: ErrMalformed},
		{name: "header with trailing data", tok: signRaw(priv, edHeader(kid)+`{}`, string(claimsJSON)), want: ErrMalformed},

		// keys
		{name: "unknown kid", tok: mustSign(t, stranger, validClaims()), want: ErrUnknownKey},
		{name: "known kid, foreign key", tok: signRaw(stranger.priv, edHeader(kid), string(claimsJSON)), want: ErrSignature},
		{name: "revoked kid", tok: mustSign(t, revoked, validClaims()), want: ErrRevoked},

		// signature
		{name: "tampered claims", tok: []byte(parts[0] + "." + flip(parts[1], 10) + "." + parts[2]), want: ErrSignature},
		{name: "claims swapped for a clinician's", tok: []byte(parts[0] + "." + enc(with("role", `"observer"`)) + "." + parts[2]), want: ErrSignature},
		{name: "tampered header", tok: []byte(enc(`{"alg":"EdDSA","kid":"`+kid+`"}`) + "." + parts[1] + "." + parts[2]), want: ErrSignature},
		{name: "tampered signature", tok: []byte(parts[0] + "." + parts[1] + "." + flip(parts[2], 5)), want: ErrSignature},
		{name: "signature too short", tok: []byte(parts[0] + "." + parts[1] + "." + parts[2][:40]), want: ErrSignature},
		{name: "signature too long", tok: []byte(parts[0] + "." + parts[1] + "." + parts[2] + "AAAA"), want: ErrSignature},
		{name: "signature with newline", tok: []byte(parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:]), want: ErrMalformed},
		{name: "signature with padding", tok: []byte(parts[0] + "." + parts[1] + "." + parts[2] + "=="), want: ErrMalformed},
		{name: "signature non-canonical", tok: []byte(parts[0] + "." + parts[1] + "." + nonCanonical(parts[2])), want: ErrMalformed},
		{name: "signature standard base64", tok: []byte(parts[0] + "." + parts[1] + "." + base64.RawStdEncoding.EncodeToString([]byte(strings.Repeat("\xff", 64)))), want: ErrMalformed},

		// shape
		{name: "empty", tok: nil, want: ErrMalformed},
		{name: "truncated to two parts", tok: []byte(parts[0] + "." + parts[1]), want: ErrMalformed},
		{name: "truncated signature", tok: valid[:len(valid)-1], want: ErrMalformed},
		{name: "truncated at the last dot", tok: valid[:len(parts[0])+len(parts[1])+2], want: ErrMalformed},
		{name: "truncated mid claims", tok: valid[:len(parts[0])+20], want: ErrMalformed},
		{name: "extra dot at end", tok: append(bytes.Clone(valid), '.'), want: ErrMalformed},
		{name: "extra part", tok: []byte(parts[0] + "." + parts[1] + "." + parts[2] + "." + parts[2]), want: ErrMalformed},
		{name: "empty header", tok: []byte("." + parts[1] + "." + parts[2]), want: ErrMalformed},
		{name: "header not base64url", tok: []byte("e30*." + parts[1] + "." + parts[2]), want: ErrMalformed},
		{name: "oversized", tok: append(bytes.Clone(valid), bytes.Repeat([]byte("A"), MaxTokenSize)...), want: ErrMalformed},
		{name: "oversized but valid shape", tok: signRaw(priv, edHeader(kid), with("pad", `"`+strings.Repeat("p", MaxTokenSize)+`"`)), want: ErrMalformed},

		// claims (all signed with the right key)
		{name: "missing sid", tok: signRaw(priv, edHeader(kid), with("sid", "")), want: ErrClaims},
		{name: "missing exp", tok: signRaw(priv, edHeader(kid), with("exp", "")), want: ErrClaims},
		{name: "missing jti", tok: signRaw(priv, edHeader(kid), with("jti", "")), want: ErrClaims},
		{name: "bad role", tok: signRaw(priv, edHeader(kid), with("role", `"admin"`)), want: ErrClaims},
		{name: "duplicate claim", tok: signRaw(priv, edHeader(kid), `{"role":"observer",`+string(claimsJSON[1:])), want: ErrClaims},
		{name: "duplicate claim by escape", tok: signRaw(priv, edHeader(kid), `{"\u0072ole":"observer",`+string(claimsJSON[1:])), want: ErrClaims},
		{name: "claim name in other case", tok: signRaw(priv, edHeader(kid), with("exp", "")[:1]+`"EXP":2000000000,`+with("exp", "")[1:]), want: ErrClaims},
		{name: "exp as string", tok: signRaw(priv, edHeader(kid), with("exp", `"2000000000"`)), want: ErrClaims},
		{name: "exp as float", tok: signRaw(priv, edHeader(kid), with("exp", `2.0e9`)), want: ErrClaims},
		{name: "exp beyond int64", tok: signRaw(priv, edHeader(kid), with("exp", `99999999999999999999`)), want: ErrClaims},
		{name: "sid as number", tok: signRaw(priv, edHeader(kid), with("sid", `42`)), want: ErrClaims},
		{name: "role null", tok: signRaw(priv, edHeader(kid), with("role", `null`)), want: ErrClaims},
		{name: "nbf null", tok: signRaw(priv, edHeader(kid), with("nbf", `null`)), want: ErrClaims},
		{name: "claims an array", tok: signRaw(priv, edHeader(kid), `[`+string(claimsJSON)+`]`), want: ErrClaims},
		{name: "claims with trailing object", tok: signRaw(priv, edHeader(kid), string(claimsJSON)+`{}`), want: ErrClaims},
		{name: "claims not JSON", tok: signRaw(priv, edHeader(kid), `{"ten":`), want: ErrClaims},
		{name: "claims signed but not base64url", tok: signedParts(priv, enc(edHeader(kid)), "e30*"), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := tt.now
			if at.IsZero() {
				at = now
			}
			got, err := ring.Verify(tt.tok, at)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify() error = %v, want nil", err)
				}
				if got.KeyID != kid {
					t.Errorf("KeyID = %q, want %q", got.KeyID, kid)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.want)
			}
			if got != (Claims{}) {
				t.Errorf("Verify() returned claims %+v with error", got)
			}
			checkVerifyErr(t, err, tt.tok)
		})
	}
}

func TestVerifyReturnsClaims(t *testing.T) {
	s := testSigner(t, 1)
	ring := NewKeyring()
	if err := ring.Add(s.KeyID(), s.Public()); err != nil {
		t.Fatal(err)
	}
	want := validClaims()
	want.NotBefore = now.Unix() - 5
	got, err := ring.Verify(mustSign(t, s, want), now)
	if err != nil {
		t.Fatal(err)
	}
	want.KeyID = s.KeyID()
	if got != want {
		t.Errorf("Verify() = %+v, want %+v", got, want)
	}
}

// TestVerifyChecksSignatureBeforeClaims: a forged token whose claims are
// broken must fail on the signature, proving the claims were not read.
func TestVerifyChecksSignatureBeforeClaims(t *testing.T) {
	s := testSigner(t, 1)
	ring := NewKeyring()
	ring.Add(s.KeyID(), s.Public())
	tok := []byte(enc(edHeader(s.KeyID())) + "." + enc(`{"exp":"not a number"`) + "." + strings.Repeat("A", 86))
	if _, err := ring.Verify(tok, now); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify() error = %v, want %v", err, ErrSignature)
	}
}

func TestSign(t *testing.T) {
	s := testSigner(t, 1)
	tok := mustSign(t, s, validClaims())
	hdr, _ := base64.RawURLEncoding.DecodeString(string(bytes.Split(tok, []byte{'.'})[0]))
	if got, want := string(hdr), `{"alg":"EdDSA","typ":"JWT","kid":"test-1"}`; got != want {
		t.Errorf("header = %s, want %s", got, want)
	}
	again := mustSign(t, s, validClaims())
	if !bytes.Equal(tok, again) {
		t.Errorf("Sign is not deterministic")
	}

	bad := validClaims()
	bad.Role = "admin"
	if _, err := s.Sign(bad); !errors.Is(err, ErrClaims) {
		t.Errorf("Sign(bad role) error = %v, want %v", err, ErrClaims)
	}

	// '<' is escaped to six bytes, so the longest ids overflow MaxTokenSize.
	huge := validClaims()
	id := strings.Repeat("<", MaxIDLen)
	huge.Tenant, huge.Subject, huge.Session, huge.Device, huge.Model, huge.ID = id, id, id, id, id, id
	if _, err := s.Sign(huge); !errors.Is(err, ErrClaims) || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("Sign(huge) error = %v, want %v (too long)", err, ErrClaims)
	}
}

func TestNewSigner(t *testing.T) {
	kid, priv := testKey(1)
	mismatched := bytes.Clone(priv)
	mismatched[40] ^= 1
	tests := []struct {
		name string
		kid  string
		priv []byte
		ok   bool
	}{
		{name: "valid", kid: kid, priv: priv, ok: true},
		{name: "empty kid", kid: "", priv: priv},
		{name: "kid too long", kid: strings.Repeat("k", MaxIDLen+1), priv: priv},
		{name: "kid with control character", kid: "k\x00", priv: priv},
		{name: "short key", kid: kid, priv: priv[:32]},
		{name: "public half mismatched", kid: kid, priv: mismatched},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.kid, tt.priv)
			if (err == nil) != tt.ok {
				t.Fatalf("NewSigner() error = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "token: ") {
				t.Errorf("error %q lacks the token: prefix", err)
			}
			if s != nil && (s.KeyID() != tt.kid || !bytes.Equal(s.Public(), priv[32:])) {
				t.Errorf("Signer = %q %x, want %q %x", s.KeyID(), s.Public(), tt.kid, priv[32:])
			}
		})
	}
}

// nonCanonical rewrites the last character of an unpadded base64url string
// of 64 bytes (86 characters, 4 spare bits) so that the spare bits are not
// zero: the same bytes, written differently.
func nonCanonical(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i|1])
}

func signedParts(priv []byte, h64, c64 string) []byte {
	signed := h64 + "." + c64
	return []byte(signed + "." + base64.RawURLEncoding.EncodeToString(edSign(priv, signed)))
}
