package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/controlserver"
	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/pgstore/password"
)

// controldForAdmin serves a real controld API (on a fresh Postgres
// database) on loopback and returns its URL and an operator token file.
// (Test-only: the stapes binary itself links no Postgres driver.)
func controldForAdmin(t *testing.T) (api, tokenFile string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := pgstore.Open(ctx, pgstore.Config{DSN: pgtest.Start(t), Logger: slog.New(slog.DiscardHandler), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const op = "admin-test-operator-token"
	srv, err := controlserver.New(controlserver.Config{Store: st, Secret: bytes.Repeat([]byte{1}, 32), OperatorToken: op,
		Password: &password.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	tokenFile = filepath.Join(t.TempDir(), "operator-token")
	if err := os.WriteFile(tokenFile, []byte(op+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return hs.URL, tokenFile
}

func login(t *testing.T, api, email, pw string) (int, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": pw})
	resp, err := http.Post(api+"/v1/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a.Token
}

func TestAdminSeedDemo(t *testing.T) {
	api, tokenFile := controldForAdmin(t)
	code, out, errs := stapes(t, "admin", "seed-demo", "--api", api, "--operator-token-file", tokenFile)
	if code != 0 {
		t.Fatalf("seed-demo = %d, %q, %q", code, out, errs)
	}
	m := regexp.MustCompile(`email: +(\S+)\n +password: +(\S+)\n`).FindStringSubmatch(out)
	if m == nil || m[1] != "doc@demo.example" {
		t.Fatalf("seed-demo printed no login:\n%s", out)
	}
	status, tok := login(t, api, m[1], m[2])
	if status != http.StatusOK {
		t.Fatalf("demo login = %d", status)
	}
	req, _ := http.NewRequest("GET", api+"/v1/patients", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ps struct {
		Patients []struct {
			ID      string `json:"id"`
			Devices []struct {
				Serial string `json:"serial"`
			} `json:"devices"`
		} `json:"patients"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ps)
	resp.Body.Close()
	if err != nil || len(ps.Patients) != 2 || len(ps.Patients[0].Devices) != 1 || ps.Patients[1].Devices[0].Serial != "demo-HA-2" {
		t.Fatalf("demo clinician's patients = %+v, %v", ps, err)
	}

	// Again: everything exists, nothing changes, the password is kept.
	code, out, errs = stapes(t, "admin", "--api", api, "--operator-token-file", tokenFile, "seed-demo")
	if code != 0 || strings.Contains(out, "created") || !strings.Contains(out, "password: unchanged") {
		t.Fatalf("second seed-demo = %d, %q, %q", code, out, errs)
	}
	if status, _ := login(t, api, m[1], m[2]); status != http.StatusOK {
		t.Fatalf("login after the second seed-demo = %d", status)
	}
}

func TestAdminCommands(t *testing.T) {
	api, tokenFile := controldForAdmin(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("a long enough password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	credFile := filepath.Join(dir, "node-credential")
	conn := []string{"--api", api, "--operator-token-file", tokenFile}
	steps := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"create tenant", []string{"create-tenant", "--id", "t1", "--name", "Clinic One"}, 0, "created tenant t1", ""},
		{"tenant again", []string{"create-tenant", "--id", "t1", "--name", "Clinic One"}, 1, "", "409 exists"},
		{"create clinician", []string{"create-clinician", "--tenant", "t1", "--id", "c1", "--email", "doc@t1.example", "--password-file", pwFile}, 0, "created clinician c1", ""},
		{"short password", []string{"create-clinician", "--tenant", "t1", "--id", "c2", "--email", "b@t1.example", "--password", "short"}, 1, "", "password must be at least"},
		{"create patient", []string{"create-patient", "--tenant", "t1", "--id", "p1"}, 0, "created patient p1", ""},
		{"create device", []string{"create-device", "--tenant", "t1", "--serial", "SN1", "--model", "m1", "--patient", "p1"}, 0, "created device SN1", ""},
		{"device of an unknown patient", []string{"create-device", "--tenant", "t1", "--serial", "SN2", "--model", "m1", "--patient", "nobody"}, 1, "", "404"},
		{"add care", []string{"add-care", "--tenant", "t1", "--clinician", "c1", "--patient", "p1"}, 0, "in clinician c1's care", ""},
		{"create relay", []string{"create-relay", "--id", "r1", "--region", "eu", "--credential-out", credFile}, 0, "created relay r1", ""},
		{"missing flag", []string{"create-patient", "--tenant", "t1"}, 2, "", "--id is required"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			args := append(append([]string{"admin"}, st.args[0]), append(conn, st.args[1:]...)...)
			code, stdout, stderr := stapes(t, args...)
			if code != st.wantCode || !strings.Contains(stdout, st.wantStdout) || !strings.Contains(stderr, st.wantStderr) {
				t.Fatalf("%q = %d, %q, %q; want %d, %q, %q", args, code, stdout, stderr, st.wantCode, st.wantStdout, st.wantStderr)
			}
		})
	}
	if status, _ := login(t, api, "doc@t1.example", "a long enough password"); status != http.StatusOK {
		t.Fatalf("login with the password from --password-file = %d", status)
	}
	cred, err := os.ReadFile(credFile)
	if fi, _ := os.Stat(credFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v", err)
	}
	req, _ := http.NewRequest("GET", api+"/v1/relay/keys", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(cred)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("relay keys with the written credential = %d", resp.StatusCode)
	}

	t.Run("connection errors", func(t *testing.T) {
		t.Setenv("STAPES_OPERATOR_TOKEN_FILE", "")
		if code, _, stderr := stapes(t, "admin", "create-tenant", "--api", api, "--id", "x", "--name", "x"); code != 2 || !strings.Contains(stderr, "--operator-token-file is required") {
			t.Fatalf("without token file: %d %q", code, stderr)
		}
		wrong := filepath.Join(dir, "wrong")
		os.WriteFile(wrong, []byte("not-the-operator-token"), 0o600)
		if code, _, stderr := stapes(t, "admin", "create-tenant", "--api", api, "--operator-token-file", wrong, "--id", "x", "--name", "x"); code != 1 || !strings.Contains(stderr, "401 unauthorized") {
			t.Fatalf("wrong token: %d %q", code, stderr)
		}
		if code, _, stderr := stapes(t, "admin", "create-tenant", "--api", "ftp://x", "--operator-token-file", tokenFile, "--id", "x", "--name", "x"); code != 2 || !strings.Contains(stderr, "--api must be") {
			t.Fatalf("bad --api: %d %q", code, stderr)
		}
	})
}
