package main

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
)

// stapes runs a command line in-process and returns its exit code and
// output.
func stapes(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{name: "help", args: []string{"help"}, wantCode: 0, wantStdout: "keygen"},
		{name: "--help", args: []string{"--help"}, wantCode: 0, wantStdout: "Verbs:"},
		{name: "-h", args: []string{"-h"}, wantCode: 0, wantStdout: "token "},
		{name: "no verb", args: nil, wantCode: 2, wantStderr: "Usage: stapes <verb>"},
		{name: "unknown verb", args: []string{"frobnicate"}, wantCode: 2, wantStderr: `stapes: unknown verb "frobnicate"`},
		{name: "verb --help", args: []string{"keygen", "--help"}, wantCode: 0, wantStdout: "-out DIR"},
		{name: "verb -h", args: []string{"token", "-h"}, wantCode: 0, wantStdout: "-role ROLE"},
		{name: "help verb", args: []string{"help", "token"}, wantCode: 0, wantStdout: "Usage: stapes token"},
		{name: "help unknown verb", args: []string{"help", "nope"}, wantCode: 2, wantStderr: "unknown verb"},
		{name: "unknown flag", args: []string{"keygen", "--bogus"}, wantCode: 2, wantStderr: "stapes: keygen: flag provided but not defined: -bogus"},
		{name: "stray argument", args: []string{"keygen", "--out", t.TempDir(), "extra"}, wantCode: 2, wantStderr: `stapes: keygen: unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := stapes(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

// TestEveryVerbHasHelp covers verbs other files add later, too.
func TestEveryVerbHasHelp(t *testing.T) {
	_, list, _ := stapes(t, "help")
	for name, v := range verbs {
		t.Run(name, func(t *testing.T) {
			if v.summary == "" || v.usage == "" {
				t.Errorf("verb %s lacks a summary or usage line", name)
			}
			if !strings.Contains(list, "  "+name+" ") {
				t.Errorf("stapes help does not list %s", name)
			}
			code, stdout, stderr := stapes(t, name, "--help")
			if code != 0 || !strings.HasPrefix(stdout, "Usage: stapes "+name) || stderr != "" {
				t.Errorf("stapes %s --help = %d, %q, %q; want 0 and usage on stdout", name, code, stdout, stderr)
			}
		})
	}
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	register(verb{name: "test-wait", summary: "wait for ctx", usage: "(test only)", flags: func(*flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env) error { <-ctx.Done(); return ctx.Err() }
	}})
	t.Cleanup(func() { delete(verbs, "test-wait") })
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"test-wait"}, &out, &errb); code != 1 || errb.String() != "stapes: test-wait: interrupted\n" {
		t.Errorf("run(cancelled) = %d, %q; want 1, interrupted", code, errb.String())
	}
}
