package token

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzVerify from fuzzSeeds")

// fuzzKeyring returns the keyring FuzzVerify verifies against (test-1
// valid, test-2 revoked) and every token it may accept: the ones signed
// here. The keys are fixed and Ed25519 is deterministic, so the checked-in
// corpus holds exactly these tokens.
func fuzzKeyring(t testing.TB) (*Keyring, [][]byte, [][]byte) {
	good, revoked := testSigner(t, 1), testSigner(t, 2)
	ring := NewKeyring()
	ring.Add(good.KeyID(), good.Public())
	ring.Add(revoked.KeyID(), revoked.Public())
	ring.Revoke(revoked.KeyID())

	_, priv := testKey(1)
	c := validClaims()
	patient := c
	patient.Role, patient.NotBefore = RolePatient, now.Unix()-10
	expired := c
	expired.Expiry = now.Unix() - 3600
	accept := [][]byte{
		mustSign(t, good, c),
		mustSign(t, good, patient),
		signRaw(priv, edHeader("test-1"), `{"ten":"t","sub":"s","role":"observer","sid":"x","exp":2000000000,"jti":"j","extra":[1,{"a":null}]}`),
	}
	refuse := [][]byte{
		mustSign(t, good, expired),
		mustSign(t, revoked, c),
		mustSign(t, testSigner(t, 3), c),
		signRaw(priv, edHeader("test-1"), `{"ten":"t","sub":"s","role":"observer","sid":"x","exp":2000000000,"jti":"j","exp":1}`),
		signRaw(priv, edHeader("test-1"), `{"ten":"t","sub":"s","role":"admin","sid":"x","exp":2000000000,"jti":"j"}`),
		[]byte(enc(`{"alg":"none","kid":"test-1"}`) + "." + enc(`{"ten":"t"}`) + "."),
		[]byte(enc(`{"alg":"HS256","kid":"test-1"}`) + "." + enc(`{"ten":"t"}`) + ".c2ln"),
		// The first accepted token again, written differently: the
		// decoder alone would skip the newline and the spare bits.
		slices.Insert(bytes.Clone(accept[0]), len(accept[0])-10, '\n'),
		append(accept[0][:len(accept[0])-1:len(accept[0])-1], nonCanonical(string(accept[0][len(accept[0])-1:]))...),
		[]byte("a.b.c.d"),
		[]byte(""),
	}
	return ring, accept, refuse
}

// FuzzVerify: Verify never panics, every refusal wraps exactly one sentinel
// and quotes nothing, and the only tokens it ever accepts are the ones a
// known key signed above — a mutation of a signed token is never accepted,
// not even one that decodes to the same bytes.
func FuzzVerify(f *testing.F) {
	ring, accept, refuse := fuzzKeyring(f)
	for _, tok := range append(accept, refuse...) {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok []byte) {
		c, err := ring.Verify(tok, now)
		if err != nil {
			if c != (Claims{}) {
				t.Errorf("Verify() returned claims with error %v", err)
			}
			checkVerifyErr(t, err, tok)
			return
		}
		for _, a := range accept {
			if bytes.Equal(tok, a) {
				return
			}
		}
		t.Errorf("Verify() accepted a token no known key signed: %q", tok)
	})
}

// TestFuzzCorpus keeps the checked-in corpus in step with fuzzKeyring; run
// with -update-corpus to rewrite it.
func TestFuzzCorpus(t *testing.T) {
	_, accept, refuse := fuzzKeyring(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	want := map[string]string{}
	for i, tok := range accept {
		want[fmt.Sprintf("accept-%d", i)] = corpusFile(tok)
	}
	for i, tok := range refuse {
		want[fmt.Sprintf("refuse-%d", i)] = corpusFile(tok)
	}
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range want {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, content := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v (run go test -run TestFuzzCorpus -update-corpus)", err)
		}
		if string(got) != content {
			t.Errorf("%s is stale (run go test -run TestFuzzCorpus -update-corpus)", name)
		}
	}
}

// corpusFile renders one []byte seed in the "go test fuzz v1" format.
func corpusFile(tok []byte) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	fmt.Fprintf(&b, "[]byte(%q)\n", tok)
	return b.String()
}
