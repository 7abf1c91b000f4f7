package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"go.uber.org/goleak"
)

// The test binary doubles as controld: with CONTROLD_CHILD=1 it runs
// main's run on its arguments, so tests can start a real process and
// signal it.
func TestMain(m *testing.M) {
	if os.Getenv("CONTROLD_CHILD") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	code := pgtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println(err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

func controld(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCommandLine(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"help", []string{"--help"}, 0, "controld migrate [flags]", ""},
		{"help verb", []string{"help"}, 0, "--database-url", ""},
		{"serve help", []string{"serve", "-h"}, 0, "  -operator-token-file", ""},
		{"unknown verb", []string{"frobnicate"}, 2, "", `unknown verb "frobnicate"`},
		{"no database", []string{"migrate"}, 2, "", "--database-url (or DATABASE_URL) is required"},
		{"unknown flag", []string{"--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"stray argument", []string{"--database-url", "postgres://x/y", "extra"}, 2, "", `unexpected argument "extra"`},
		{"half TLS", []string{"--database-url", "postgres://x/y", "--tls-cert", "c.pem"}, 2, "", "--tls-cert and --tls-key go together"},
		{"bad operator token file", []string{"--database-url", "postgres://x/y", "--secret-file", filepath.Join(t.TempDir(), "s"), "--operator-token-file", "/nonexistent/op"}, 1, "", "reading --operator-token-file"},
		{"zero rate limit", []string{"--database-url", "postgres://x/y", "--login-per-name", "0"}, 2, "", "must not be 0"},
		{"zero placement max age", []string{"--database-url", "postgres://x/y", "--placement-max-age", "0s"}, 2, "", "--placement-max-age must be positive"},
		{"bad DSN", []string{"migrate", "--database-url", "postgres://x:y@:-1/"}, 1, "", "--database-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := controld(tt.args...)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantStdout) || !strings.Contains(stderr, tt.wantStderr) {
				t.Fatalf("code %d stdout %q stderr %q; want %d, %q, %q", code, stdout, stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

func TestMigrateTwice(t *testing.T) {
	dsn := pgtest.Start(t)
	if code, out, errs := controld("migrate", "--database-url", dsn, "--log-level", "error"); code != 0 || !strings.Contains(out, "applied 0001_init.sql") {
		t.Fatalf("first migrate: %d %q %q", code, out, errs)
	}
	if code, out, errs := controld("migrate", "--database-url", dsn, "--log-level", "error"); code != 0 || out != "database schema is up to date\n" {
		t.Fatalf("second migrate: %d %q %q", code, out, errs)
	}
}

// child is a controld process.
type child struct {
	cmd   *exec.Cmd
	ready chan readyLine
	done  chan struct{} // closed when the process has exited and been reaped
	err   error         // its exit status, once done is closed
}

type readyLine struct{ api, ops string }

func startControld(t *testing.T, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CONTROLD_CHILD=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, ready: make(chan readyLine, 1), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct {
				Msg string `json:"msg"`
				API string `json:"api"`
				Ops string `json:"ops"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "controld ready" {
				c.ready <- readyLine{rec.API, rec.Ops}
			}
			if testing.Verbose() {
				t.Logf("controld: %s", sc.Bytes())
			}
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails harmlessly if it has exited
		<-c.done
	})
	return c
}

func (c *child) waitReady(t *testing.T) readyLine {
	t.Helper()
	select {
	case r := <-c.ready:
		return r
	case <-c.done:
		t.Fatalf("controld exited before it was ready: %v", c.err)
	case <-time.After(60 * time.Second):
		t.Fatal("controld did not become ready")
	}
	return readyLine{}
}

func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeAndSIGTERM runs the real binary: --migrate on an empty
// database, a self-signed certificate, the operator token from a file, the
// API and ops endpoints answering, and a clean exit on SIGTERM.
func TestServeAndSIGTERM(t *testing.T) {
	dir := t.TempDir()
	opFile := filepath.Join(dir, "operator-token")
	if err := os.WriteFile(opFile, []byte("operator-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "cert.pem")
	c := startControld(t, "serve", "--database-url", pgtest.Start(t), "--migrate", "--listen", "127.0.0.1:0",
		"--ops", "127.0.0.1:0", "--secret-file", filepath.Join(dir, "secret"), "--operator-token-file", opFile,
		"--self-signed-out", certFile)
	r := c.waitReady(t)
	if !strings.HasPrefix(r.api, "https://127.0.0.1:") {
		t.Fatalf("api address %q, want https on loopback", r.api)
	}
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	if fi, err := os.Stat(filepath.Join(dir, "secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v; want 0600", err, fi.Mode())
	}

	for _, u := range []string{r.api + "/healthz", r.api + "/readyz", r.api + "/openapi.json", "http://" + r.ops + "/readyz"} {
		if code, body := get(t, hc, u); code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", u, code, body)
		}
	}
	req, _ := http.NewRequest("POST", r.api+"/v1/operator/tenants", strings.NewReader(`{"id": "t1", "name": "Clinic"}`))
	req.Header.Set("Authorization", "Bearer operator-token-0123456789")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create tenant with the operator token from the file: %d", resp.StatusCode)
	}
	_, metrics := get(t, hc, "http://"+r.ops+"/metrics")
	for _, name := range []string{`stapes_controld_http_requests_total{code="201",route="POST /v1/operator/tenants"} 1`, "go_goroutines"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}

	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
		if c.err != nil {
			t.Fatalf("controld exited with %v after SIGTERM, want 0", c.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("controld did not exit after SIGTERM")
	}
}
