package turn

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	oldSecret = []byte("old-secret-0123456789")
	newSecret = []byte("new-secret-9876543210")
	t0        = time.Unix(1_800_000_000, 0)
)

func creds(ended ...string) *Credentials {
	return &Credentials{
		Secrets: [][]byte{newSecret, oldSecret},
		Now:     func() time.Time { return t0 },
		Ended: func(s string) bool {
			for _, e := range ended {
				if e == s {
					return true
				}
			}
			return false
		},
	}
}

// TestMintMatchesDraft recomputes the credential by the draft's recipe.
func TestMintMatchesDraft(t *testing.T) {
	c := creds()
	user, pass, exp, err := c.Mint("sess-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := "1800003600:sess-1"; user != want {
		t.Errorf("username = %q, want %q", user, want)
	}
	if !exp.Equal(t0.Add(time.Hour)) {
		t.Errorf("expiry = %v, want %v", exp, t0.Add(time.Hour))
	}
	m := hmac.New(sha1.New, newSecret)
	m.Write([]byte(user))
	if want := base64.StdEncoding.EncodeToString(m.Sum(nil)); pass != want {
		t.Errorf("password = %q, want %q", pass, want)
	}
	key, sess, err := c.Verify(user, "stapes")
	if err != nil {
		t.Fatal(err)
	}
	want := md5.Sum([]byte(user + ":stapes:" + pass))
	if string(key) != string(want[:]) || sess != "sess-1" {
		t.Errorf("Verify = %x %q, want %x %q", key, sess, want, "sess-1")
	}
	if got, err := c.CheckPassword(user, pass); err != nil || got != "sess-1" {
		t.Errorf("CheckPassword = %q %v", got, err)
	}
}

func TestMintRefuses(t *testing.T) {
	tests := []struct {
		name    string
		secrets [][]byte
		session string
		ttl     time.Duration
		want    error
	}{
		{"no secrets", nil, "s", time.Hour, ErrNoSecrets},
		{"weak secret", [][]byte{[]byte("short")}, "s", time.Hour, ErrWeakSecret},
		{"empty session", [][]byte{newSecret}, "", time.Hour, ErrBadSession},
		{"colon in session", [][]byte{newSecret}, "a:b", time.Hour, ErrBadSession},
		{"long session", [][]byte{newSecret}, strings.Repeat("a", MaxSessionLen+1), time.Hour, ErrBadSession},
		{"zero ttl", [][]byte{newSecret}, "s", 0, ErrBadTTL},
		{"ttl above max", [][]byte{newSecret}, "s", DefaultMaxTTL + time.Second, ErrBadTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Credentials{Secrets: tt.secrets}
			if _, _, _, err := c.Mint(tt.session, tt.ttl); !errors.Is(err, tt.want) {
				t.Errorf("Mint = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	c := creds("ended-1")
	good, _, _, _ := c.Mint("live-1", time.Hour)
	ended, _, _, _ := c.Mint("ended-1", time.Hour)
	tests := []struct {
		name string
		c    *Credentials
		user string
		want error
	}{
		{"no colon", c, "1800003600", ErrBadUsername},
		{"empty expiry", c, ":s", ErrBadUsername},
		{"signed expiry", c, "+1800003600:s", ErrBadUsername},
		{"negative expiry", c, "-1:s", ErrBadUsername},
		{"spaced expiry", c, " 1800003600:s", ErrBadUsername},
		{"overflow expiry", c, "99999999999999999999:s", ErrBadUsername},
		{"19 digits overflow", c, "9999999999999999999:s", ErrBadUsername},
		{"hex expiry", c, "0x6b49d200:s", ErrBadUsername},
		{"reversed order", c, "live-1:1800003600", ErrBadUsername},
		{"empty session", c, "1800003600:", ErrBadSession},
		{"second colon", c, "1800003600:a:b", ErrBadSession},
		{"unicode session", c, "1800003600:sé", ErrBadSession},
		{"expired", c, "1799999000:live-1", ErrExpired},
		{"far future", c, "1900000000:live-1", ErrExpiryTooFar},
		{"ended session", c, ended, ErrSessionEnded},
		{"no Ended hook", &Credentials{Secrets: c.Secrets, Now: c.Now}, good, ErrNoSessionCheck},
		{"no secrets", &Credentials{Now: c.Now, Ended: c.Ended}, good, ErrNoSecrets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := tt.c.Verify(tt.user, "stapes"); !errors.Is(err, tt.want) {
				t.Errorf("Verify(%q) = %v, want %v", tt.user, err, tt.want)
			}
			if _, _, err := tt.c.Keys(tt.user, "stapes"); !errors.Is(err, tt.want) {
				t.Errorf("Keys(%q) = %v, want %v", tt.user, err, tt.want)
			}
			if _, err := tt.c.CheckPassword(tt.user, "x"); !errors.Is(err, tt.want) {
				t.Errorf("CheckPassword(%q) = %v, want %v", tt.user, err, tt.want)
			}
		})
	}
}

func TestExpiryLeeway(t *testing.T) {
	c := creds()
	user, _, _, _ := c.Mint("s", time.Second)
	for _, tt := range []struct {
		name  string
		after time.Duration
		want  error
	}{
		{"at expiry", time.Second, nil},
		{"within leeway", time.Second + ExpiryLeeway, nil},
		{"past leeway", 2*time.Second + ExpiryLeeway, ErrExpired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c.Now = func() time.Time { return t0.Add(tt.after) }
			if _, _, err := c.Verify(user, "r"); !errors.Is(err, tt.want) {
				t.Errorf("Verify at +%v = %v, want %v", tt.after, err, tt.want)
			}
		})
	}
}

// TestRotation: a credential minted under the old secret keeps working via
// Keys/KeyFor/CheckPassword after the new secret goes first, until removed.
func TestRotation(t *testing.T) {
	before := &Credentials{Secrets: [][]byte{oldSecret}, Now: func() time.Time { return t0 }, Ended: func(string) bool { return false }}
	user, pass, _, _ := before.Mint("s", time.Hour)
	wantKey := md5.Sum([]byte(user + ":r:" + pass))
	check := func(k []byte) bool { return hmac.Equal(k, wantKey[:]) } // stands in for MESSAGE-INTEGRITY

	after := creds()
	keys, _, err := after.Keys(user, "r")
	if err != nil || len(keys) != 2 {
		t.Fatalf("Keys = %d keys, %v", len(keys), err)
	}
	if string(keys[1]) != string(wantKey[:]) {
		t.Errorf("Keys[1] is not the old secret's key")
	}
	key, sess, err := after.KeyFor(user, "r", check)
	if err != nil || string(key) != string(wantKey[:]) || sess != "s" {
		t.Errorf("KeyFor = %x %q %v, want old key", key, sess, err)
	}
	if _, err := after.CheckPassword(user, pass); err != nil {
		t.Errorf("CheckPassword after rotation = %v", err)
	}
	if k, _, _ := after.Verify(user, "r"); string(k) == string(wantKey[:]) {
		t.Errorf("Verify returned the old secret's key; it documents Secrets[0] only")
	}

	removed := &Credentials{Secrets: [][]byte{newSecret}, Now: after.Now, Ended: after.Ended}
	if _, _, err := removed.KeyFor(user, "r", check); !errors.Is(err, ErrBadIntegrity) {
		t.Errorf("KeyFor after removal = %v, want ErrBadIntegrity", err)
	}
	if _, err := removed.CheckPassword(user, pass); !errors.Is(err, ErrBadPassword) {
		t.Errorf("CheckPassword after removal = %v, want ErrBadPassword", err)
	}
}

// TestOtherSessionCredential: a password minted for one session does not
// verify a username naming another.
func TestOtherSessionCredential(t *testing.T) {
	c := creds()
	userA, passA, _, _ := c.Mint("a", time.Hour)
	userB := strings.Replace(userA, ":a", ":b", 1)
	if _, err := c.CheckPassword(userB, passA); !errors.Is(err, ErrBadPassword) {
		t.Errorf("CheckPassword(b, pass of a) = %v, want ErrBadPassword", err)
	}
	keyB, _, _ := c.Verify(userB, "r")
	forged := md5.Sum([]byte(userB + ":r:" + passA))
	if string(keyB) == string(forged[:]) {
		t.Error("key for session b equals the one built from a's password")
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1800003600:sess-1", ":", "1:", "+1:a", "99999999999999999999:a", "1:a:b", "1:\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		exp, sess, err := parseUsername(s)
		if err != nil {
			if !errors.Is(err, ErrBadUsername) && !errors.Is(err, ErrBadSession) {
				t.Fatalf("parseUsername(%q) = %v: not a sentinel", s, err)
			}
			return
		}
		// Whatever parses round-trips to itself modulo leading zeros, and
		// names a session Mint would accept.
		if checkSession(sess) != nil || strings.ContainsRune(sess, ':') {
			t.Fatalf("parseUsername(%q) session %q not valid", s, sess)
		}
		digits, _, _ := strings.Cut(s, ":")
		if strings.TrimLeft(digits, "0") != strings.TrimLeft(strconv.FormatInt(exp.Unix(), 10), "0") {
			t.Fatalf("parseUsername(%q) expiry %d", s, exp.Unix())
		}
	})
}
