package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stapes-relay/stapes/control/pglocal"
)

// runFull runs the whole system: Postgres (private, from the system's
// binaries, unless DATABASE_URL is set), controld, three relays in three
// regions registered with it and gossiping (demo_cluster.go), a seeded
// demo clinic, and a fitting session created through the API — placed by
// controld from the clinician's RTTs to the relays — with the simulated
// patient and clinician on its tokens.
func (d *demoCmd) runFull(ctx context.Context, e *env, out *lineWriter) error {
	relaydBin, err := binPath(d.relayd, "relayd")
	if err != nil {
		return err
	}
	controldBin, err := binPath(d.controld, "controld")
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(d.dir)
	if err != nil {
		return err
	}
	dsn, stopPG, err := demoPostgres(ctx, dir, out)
	if err != nil {
		return err
	}
	defer stopPG()

	api, err := freeAddr(d.api)
	if err != nil {
		return err
	}
	apiOps, err := freeAddr(d.apiOps)
	if err != nil {
		return err
	}
	opTok, err := secretFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		return err
	}
	apiURL := "http://" + api
	ctrl, err := startChild(ctx, "controld", controldBin, []string{"--plain", "--migrate", "--listen", api, "--ops", apiOps,
		"--database-url", dsn, "--operator-token-file", opTok, "--secret-file", filepath.Join(dir, "controld-secret"),
		"--log-level", "warn"}, filepath.Join(dir, "controld.log"), func() bool { return httpOK(apiURL + "/healthz") }, out)
	if err != nil {
		return err
	}
	defer ctrl.stop(out)

	pwFile, err := secretFile(filepath.Join(dir, "demo-password"))
	if err != nil {
		return err
	}
	admin := func(args ...string) error {
		var buf bytes.Buffer
		full := append([]string{"admin", "--api", apiURL, "--operator-token-file", opTok}, args...)
		if code := run(ctx, full, &buf, &buf); code != 0 {
			return fmt.Errorf("stapes %s: %s", strings.Join(args[:1], " "), strings.TrimSpace(buf.String()))
		}
		return nil
	}
	if err := admin("seed-demo", "--password-file", pwFile); err != nil {
		return err
	}
	relays, files, err := d.startDemoCluster(ctx, relaydBin, dir, apiURL, admin, out)
	defer func() {
		for i := len(relays) - 1; i >= 0; i-- {
			relays[i].c.stop(out)
		}
	}()
	if err != nil {
		return err
	}
	if err := printRelayMap(ctx, relays, out); err != nil {
		return err
	}
	rtts, err := probeForPlacement(ctx, apiURL, files.cert, relays, out)
	if err != nil {
		return err
	}

	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return err
	}
	sess, err := demoSession(ctx, apiURL, "doc@demo.example", strings.TrimSpace(string(pw)), rtts)
	if err != nil {
		return err
	}
	opsAddr := ""
	for _, r := range relays {
		if r.id == sess.Relay.ID {
			opsAddr = r.ops
		}
	}
	if opsAddr == "" {
		return fmt.Errorf("controld placed the session on relay %q, which the demo did not start", sess.Relay.ID)
	}
	out.printf("controld API %s (OpenAPI at %s/openapi.json); demo login doc@demo.example / password in %s", apiURL, apiURL, pwFile)
	how := "by " + sess.Placement.By
	if sess.Placement.PathMS != nil {
		how += fmt.Sprintf(" (%.1f ms)", *sess.Placement.PathMS)
	}
	out.printf("session %s placed by controld on relay %s in region %s %s (device %s at config v%d): patient over QUIC, clinician over WebSocket",
		sess.SessionID, sess.Relay.ID, sess.Relay.Region, how, sess.Device.Serial, sess.Device.ConfigVersion)
	cf := connFlags{cert: files.cert}
	tokenOf := func(tok string) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { return []byte(tok), nil }
	}
	cf.urls = strings.Join(nonEmpty(sess.Relay.QUICURL, sess.Relay.WSURL), ",")
	pcfg, err := cf.tlsOnly()
	if err != nil {
		return err
	}
	pcfg.Token = tokenOf(sess.PatientToken)
	ccfg := pcfg
	ccfg.URLs = nonEmpty(sess.Relay.WSURL, sess.Relay.QUICURL)
	ccfg.Token = tokenOf(sess.ClinicianToken)
	res, err := d.runSims(ctx, e, pcfg, ccfg, sess.Device.ConfigVersion)
	if err != nil {
		return err
	}
	waitSynced(ctx, opsAddr, out)
	return d.report(ctx, res, opsAddr, out)
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// demoPostgres returns a DSN: DATABASE_URL, or a private server started in
// dir/pg from the system's binaries (installed with apt-get when missing
// and running as root).
func demoPostgres(ctx context.Context, dir string, out *lineWriter) (string, func(), error) {
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		out.printf("postgres: using DATABASE_URL")
		return dsn, func() {}, nil
	}
	log := slog.New(slog.DiscardHandler)
	bins, err := pglocal.FindBinaries(ctx)
	if err != nil && os.Geteuid() == 0 {
		out.printf("postgres server binaries not found; installing the Debian postgresql package")
		bins, err = pglocal.EnsureInstalled(ctx, log)
	}
	if err != nil {
		return "", nil, fmt.Errorf("%w (install the postgresql package or set DATABASE_URL)", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", nil, err
	}
	pg, err := pglocal.Start(ctx, pglocal.Options{Dir: filepath.Join(dir, "pg"), Logger: log, Binaries: &bins})
	if err != nil {
		return "", nil, err
	}
	if err := pg.CreateDatabase(ctx, "stapes"); err != nil {
		pg.Close()
		return "", nil, err
	}
	out.printf("postgres %d (private, data in %s) on port %d", bins.Version, filepath.Join(dir, "pg"), pg.Port())
	return pg.DSN("stapes"), func() { pg.Close(); out.printf("postgres stopped") }, nil
}

// secretFile returns path, creating it with a random secret if missing.
func secretFile(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	return path, os.WriteFile(path, []byte(rand.Text()+"\n"), 0o600)
}

func httpOK(url string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// demoSessionAnswer is what POST /v1/sessions answers (the part we use).
type demoSessionAnswer struct {
	SessionID string `json:"session_id"`
	Relay     struct {
		ID      string `json:"id"`
		Region  string `json:"region"`
		WSURL   string `json:"ws_url"`
		QUICURL string `json:"quic_url"`
	} `json:"relay"`
	Placement struct {
		By     string   `json:"by"`
		PathMS *float64 `json:"path_ms"`
	} `json:"placement"`
	ClinicianToken string `json:"clinician_token"`
	PatientToken   string `json:"patient_token"`
	Device         struct {
		Serial        string `json:"serial"`
		ConfigVersion uint64 `json:"config_version"`
	} `json:"device"`
}

// demoSession logs the demo clinician in and creates a fitting session for
// the first patient with a device, with the clinician's RTTs to the relays
// for placement, waiting for a relay to be live.
func demoSession(ctx context.Context, api, email, password string, rtts map[string]float64) (demoSessionAnswer, error) {
	var a demoSessionAnswer
	var login struct {
		Token string `json:"token"`
	}
	c := &adminConn{api: api, hc: &http.Client{Timeout: 30 * time.Second}}
	if err := c.call(ctx, "POST", "/v1/login", map[string]string{"email": email, "password": password}, &login); err != nil {
		return a, fmt.Errorf("login: %w", err)
	}
	c.token = login.Token
	var pts struct {
		Patients []struct {
			ID      string `json:"id"`
			Devices []struct {
				Serial string `json:"serial"`
			} `json:"devices"`
		} `json:"patients"`
	}
	if err := c.call(ctx, "GET", "/v1/patients", nil, &pts); err != nil {
		return a, fmt.Errorf("patients: %w", err)
	}
	var body map[string]any
	for _, p := range pts.Patients {
		if len(p.Devices) > 0 {
			body = map[string]any{"patient_id": p.ID, "device_serial": p.Devices[0].Serial}
			break
		}
	}
	if rtts != nil {
		body["rtts"] = rtts
	}
	if body == nil {
		return a, errors.New("the demo clinician has no patient with a device")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := c.call(ctx, "POST", "/v1/sessions", body, &a)
		if err == nil || time.Now().After(deadline) {
			return a, err
		}
		select { // the relay registers and heartbeats within a moment
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitSynced waits (up to 10 s) until the relay's outbox is confirmed by
// controld, so the demo ends with everything in Postgres.
func waitSynced(ctx context.Context, opsAddr string, out *lineWriter) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if v, ok := metricValue(opsAddr, "stapes_relay_sync_backlog_batches"); ok && v == 0 {
			n, _ := metricValue(opsAddr, "stapes_relay_sync_records_total")
			out.printf("synced to Postgres through controld: %.0f log entries (messages and receipts, hash-chained)", n)
			return
		}
		time.Sleep(100 * time.Millisecond) // polling relayd's metrics
	}
	out.printf("sync to controld still has a backlog; relayd keeps retrying")
}

func metricValue(opsAddr, name string) (float64, bool) {
	resp, err := http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, name+" ") {
			var v float64
			if _, err := fmt.Sscan(strings.TrimPrefix(l, name+" "), &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}
