package token

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

func TestKeyringRotation(t *testing.T) {
	old, cur := testSigner(t, 1), testSigner(t, 2)
	ring := NewKeyring()
	for _, s := range []*Signer{old, cur} {
		if err := ring.Add(s.KeyID(), s.Public()); err != nil {
			t.Fatal(err)
		}
	}
	oldTok, curTok := mustSign(t, old, validClaims()), mustSign(t, cur, validClaims())

	steps := []struct {
		name         string
		do           func()
		wantOld      error
		wantCur      error
		wantAccepted []string
	}{
		{name: "both keys valid", do: func() {}, wantAccepted: []string{"test-1", "test-2"}},
		{name: "old key revoked", do: func() { ring.Revoke(old.KeyID()) }, wantOld: ErrRevoked, wantAccepted: []string{"test-2"}},
		{name: "re-adding a revoked key keeps it revoked", do: func() { ring.Add(old.KeyID(), old.Public()) }, wantOld: ErrRevoked, wantAccepted: []string{"test-2"}},
		{name: "unrevoked", do: func() { ring.Unrevoke(old.KeyID()) }, wantAccepted: []string{"test-1", "test-2"}},
		{name: "both revoked", do: func() { ring.Revoke(old.KeyID()); ring.Revoke(cur.KeyID()) }, wantOld: ErrRevoked, wantCur: ErrRevoked, wantAccepted: []string{}},
	}
	for _, st := range steps {
		st.do()
		if _, err := ring.Verify(oldTok, now); !errors.Is(err, st.wantOld) || (err == nil) != (st.wantOld == nil) {
			t.Errorf("%s: old token: error = %v, want %v", st.name, err, st.wantOld)
		}
		if _, err := ring.Verify(curTok, now); !errors.Is(err, st.wantCur) || (err == nil) != (st.wantCur == nil) {
			t.Errorf("%s: current token: error = %v, want %v", st.name, err, st.wantCur)
		}
		if got := ring.KeyIDs(); !slices.Equal(got, st.wantAccepted) {
			t.Errorf("%s: KeyIDs() = %q, want %q", st.name, got, st.wantAccepted)
		}
	}
}

func TestKeyringRevokeBeforeAdd(t *testing.T) {
	s := testSigner(t, 1)
	ring := NewKeyring()
	ring.Revoke(s.KeyID())
	if err := ring.Add(s.KeyID(), s.Public()); err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Verify(mustSign(t, s, validClaims()), now); !errors.Is(err, ErrRevoked) {
		t.Errorf("Verify() error = %v, want %v", err, ErrRevoked)
	}
}

func TestKeyringAdd(t *testing.T) {
	a, b := testSigner(t, 1), testSigner(t, 2)
	ring := NewKeyring()
	tests := []struct {
		name string
		kid  string
		pub  []byte
		want error // nil: ok; errAny: some error
	}{
		{name: "new key", kid: a.KeyID(), pub: a.Public()},
		{name: "same key again", kid: a.KeyID(), pub: a.Public()},
		{name: "other key under the same kid", kid: a.KeyID(), pub: b.Public(), want: ErrExists},
		{name: "short key", kid: "short", pub: b.Public()[:31], want: errAny},
		{name: "empty kid", kid: "", pub: b.Public(), want: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ring.Add(tt.kid, tt.pub)
			switch {
			case tt.want == nil && err != nil, tt.want != nil && err == nil:
				t.Fatalf("Add() error = %v, want %v", err, tt.want)
			case tt.want != nil && tt.want != errAny && !errors.Is(err, tt.want):
				t.Fatalf("Add() error = %v, want %v", err, tt.want)
			}
		})
	}
	// Add keeps a copy: changing the caller's slice changes nothing.
	pub := b.Public()
	ring.Add(b.KeyID(), pub)
	pub[0] ^= 0xff
	if _, err := ring.Verify(mustSign(t, b, validClaims()), now); err != nil {
		t.Errorf("Verify() after caller changed its key slice: %v", err)
	}
}

var errAny = errors.New("any error")

// TestKeyringConcurrent runs Add, Revoke, Unrevoke, KeyIDs and Verify at
// once; run it with -race.
func TestKeyringConcurrent(t *testing.T) {
	signers := []*Signer{testSigner(t, 1), testSigner(t, 2), testSigner(t, 3)}
	ring := NewKeyring()
	ring.Add(signers[0].KeyID(), signers[0].Public())
	toks := make([][]byte, len(signers))
	for i, s := range signers {
		toks[i] = mustSign(t, s, validClaims())
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				s := signers[(i+j)%len(signers)]
				switch j % 4 {
				case 0:
					ring.Add(s.KeyID(), s.Public())
				case 1:
					ring.Revoke(s.KeyID())
				case 2:
					ring.Unrevoke(s.KeyID())
				case 3:
					ring.KeyIDs()
				}
			}
		})
		wg.Go(func() {
			for j := range 200 {
				_, err := ring.Verify(toks[(i+j)%len(toks)], now)
				if err != nil && !errors.Is(err, ErrRevoked) && !errors.Is(err, ErrUnknownKey) {
					t.Errorf("Verify() error = %v", err)
				}
			}
		})
	}
	wg.Wait()
}
