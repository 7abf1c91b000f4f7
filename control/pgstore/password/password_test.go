package password

import (
	"errors"
	"strings"
	"testing"
)

// cheap keeps the tests fast (the race detector slows argon2 down).
var cheap = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashCheck(t *testing.T) {
	h, err := HashWith(cheap, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q is not a PHC argon2id string", h)
	}
	h2, _ := HashWith(cheap, "correct horse")
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt")
	}
	tests := []struct {
		name     string
		hash     string
		password string
		want     bool
		wantErr  error
	}{
		{"right", h, "correct horse", true, nil},
		{"wrong", h, "correct horsf", false, nil},
		{"empty", h, "", false, nil},
		{"too long", h, strings.Repeat("x", MaxLen+1), false, nil},
		{"other algorithm", strings.Replace(h, "argon2id", "argon2i", 1), "correct horse", false, ErrMalformed},
		{"truncated", h[:len(h)-30], "correct horse", false, ErrMalformed},
		{"garbage", "$2a$10$abc", "x", false, ErrMalformed},
		{"huge memory", "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", "x", false, ErrMalformed},
		{"zero threads", "$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", "x", false, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Check(tt.hash, tt.password)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Check = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNeedsRehash(t *testing.T) {
	weak, _ := HashWith(cheap, "pw")
	if !NeedsRehash(weak) {
		t.Error("a cheap hash does not need a rehash")
	}
	if NeedsRehash(strings.Replace(weak, "m=64,t=1", "m=65536,t=2", 1)) {
		t.Error("a default-strength hash needs a rehash")
	}
	if _, err := HashWith(cheap, strings.Repeat("x", MaxLen+1)); !errors.Is(err, ErrTooLong) {
		t.Errorf("HashWith(too long) = %v, want ErrTooLong", err)
	}
}

func BenchmarkHashDefault(b *testing.B) {
	for b.Loop() {
		if _, err := Hash("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
