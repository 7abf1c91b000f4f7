package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/token"
)

func init() {
	register(verb{
		name:    "demo",
		summary: "run the whole system locally: Postgres, controld, three relays in three regions, a simulated patient and a clinician",
		usage:   "[--dir DIR] [--listen ADDR] [--api ADDR] [--commands N | --forever] [--relay-only]",
		flags: func(fs *flag.FlagSet) runFunc {
			d := &demoCmd{}
			fs.StringVar(&d.dir, "dir", ".stapes-demo", "working `DIR`: keys, relay data, logs")
			fs.StringVar(&d.listen, "listen", "127.0.0.1:8443", "relayd address (TCP for WebSocket, UDP for QUIC); the full demo's relays use this port, +1 and +2; a busy port is replaced by a free one")
			fs.StringVar(&d.ops, "ops", "127.0.0.1:9090", "relayd ops address (/metrics, /healthz, /readyz, /v1/map); the full demo's relays use this port, +10 and +20")
			fs.IntVar(&d.commands, "commands", 10, "config commands the clinician sends")
			fs.BoolVar(&d.forever, "forever", false, "keep sending until interrupted")
			fs.StringVar(&d.relayd, "relayd", "", "relayd binary (default: next to this stapes binary, then $PATH)")
			fs.StringVar(&d.controld, "controld", "", "controld binary (default: next to this stapes binary, then $PATH)")
			fs.StringVar(&d.api, "api", "127.0.0.1:8080", "controld API address (plain HTTP, local only); a busy port is replaced by a free one")
			fs.StringVar(&d.apiOps, "api-ops", "127.0.0.1:9091", "controld ops address")
			fs.BoolVar(&d.relayOnly, "relay-only", false, "run one relayd with dev keys and no control plane (no Postgres, no controld)")
			return d.run
		},
	})
}

type demoCmd struct {
	dir, listen, ops, relayd string
	controld, api, apiOps    string
	commands                 int
	forever, relayOnly       bool
}

func (d *demoCmd) run(ctx context.Context, e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	if d.commands < 1 && !d.forever {
		return usagef("--commands must be at least 1")
	}
	out := &lineWriter{w: e.stdout}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	if !d.relayOnly {
		return d.runFull(ctx, e, out)
	}
	keyFile := filepath.Join(d.dir, "signing-key.json")
	keyring := filepath.Join(d.dir, "keyring.json")
	if err := demoKeys(keyFile, keyring); err != nil {
		return err
	}
	bin, err := d.relaydPath()
	if err != nil {
		return err
	}
	addr, err := freeAddr(d.listen)
	if err != nil {
		return err
	}
	opsAddr, err := freeAddr(d.ops)
	if err != nil {
		return err
	}
	rd, cert, err := startDemoRelay(ctx, bin, d.dir, addr, opsAddr, []string{"--keyring", keyring}, out)
	if err != nil {
		return err
	}
	defer rd.stop(out)

	// A new session and hearing aid each run: the simulated aid starts at
	// config v0, and the relay keeps device state across runs.
	suffix := strings.ToLower(rand.Text()[:6])
	session := "demo-" + suffix
	cf := connFlags{key: keyFile, tenant: "demo-clinic", session: session, device: "HA-" + suffix, model: "demo-ric", cert: cert}
	out.printf("session %s: patient over QUIC, clinician over WebSocket", session)
	out.printf("ops: http://%s/metrics  http://%s/readyz", opsAddr, opsAddr)

	cf.urls = "quic://" + addr + ",wss://" + addr + "/v1/connect"
	pcfg, err := cf.clientConfig("patient")
	if err != nil {
		return err
	}
	cf.urls = "wss://" + addr + "/v1/connect,quic://" + addr
	ccfg, err := cf.clientConfig("clinician")
	if err != nil {
		return err
	}
	res, err := d.runSims(ctx, e, pcfg, ccfg, 0)
	if err != nil {
		return err
	}
	return d.report(ctx, res, opsAddr, out)
}

// report prints the outcome and the relay's metrics.
func (d *demoCmd) report(ctx context.Context, res clinResult, opsAddr string, out *lineWriter) error {
	out.printf("done: %d applied, %d rejected by the hearing aid, %d refused by the relay", res.applied, res.rejected, res.refused)
	printDemoMetrics(opsAddr, out)
	if ctx.Err() == nil && !d.forever && res.applied == 0 {
		return errors.New("no command was applied; see " + filepath.Join(d.dir, "relayd.log"))
	}
	return nil
}

// runSims runs the simulated patient (in the background) and clinician
// until the clinician has sent its commands.
// aidVersion is the config version the simulated hearing aid starts at.
func (d *demoCmd) runSims(ctx context.Context, e *env, pcfg, ccfg client.Config, aidVersion uint64) (clinResult, error) {
	pctx, stopPatient := context.WithCancel(ctx)
	defer stopPatient()
	var wg sync.WaitGroup
	var perr error
	p := &patientSim{bleDelay: 40 * time.Millisecond, telemetry: time.Second, version: aidVersion, ready: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		perr = p.run(pctx, pcfg, &lineWriter{w: e.stdout, prefix: "[patient]   "})
	}()
	select { // the patient's app is online before the clinician starts
	case <-p.ready:
	case <-ctx.Done():
	case <-time.After(15 * time.Second):
	}
	n := d.commands
	if d.forever {
		n = 0
	}
	c := &clinicianSim{commands: n, interval: 300 * time.Millisecond, param: "gain.l.2k", step: 20}
	res, cerr := c.runCount(ctx, ccfg, &lineWriter{w: e.stdout, prefix: "[clinician] "})
	stopPatient()
	wg.Wait()
	if cerr != nil && ctx.Err() == nil {
		return res, fmt.Errorf("clinician: %w", cerr)
	}
	if perr != nil && ctx.Err() == nil && !errors.Is(perr, context.Canceled) {
		return res, fmt.Errorf("patient: %w", perr)
	}
	return res, nil
}

// demoKeys creates a dev signing key and keyring once.
func demoKeys(keyFile, keyring string) error {
	if _, err := os.Stat(keyFile); err == nil {
		return nil
	}
	kid, priv, err := token.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := token.WriteKeyringFile(keyring, map[string]ed25519.PublicKey{kid: priv.Public().(ed25519.PublicKey)}); err != nil {
		return err
	}
	return token.WriteSignerFile(keyFile, kid, priv)
}

func (d *demoCmd) relaydPath() (string, error) { return binPath(d.relayd, "relayd") }

// binPath finds a sibling binary: the flag's value, next to this stapes
// binary, or on $PATH.
func binPath(flagValue, name string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s binary not found next to stapes or in $PATH; run 'make build' (or pass --%s)", name, name)
	}
	return p, nil
}

// freeAddr returns addr if its TCP and UDP ports are free, else a free
// port on the same host.
func freeAddr(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", usagef("bad address %q: %v", addr, err)
	}
	for _, try := range []string{addr, net.JoinHostPort(host, "0")} {
		for range 10 {
			tl, err := net.Listen("tcp", try)
			if err != nil {
				break
			}
			got := tl.Addr().String()
			ul, err := net.ListenPacket("udp", got)
			tl.Close()
			if err == nil {
				ul.Close()
				return got, nil
			}
		}
	}
	return "", fmt.Errorf("no free port on %s", host)
}

// child is a process the demo started; it is stopped by its pid.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// startChild starts bin with args, logging to logPath, and waits until
// ready reports true (or the process exits, or 20 s pass).
func startChild(ctx context.Context, name, bin string, args []string, logPath string, ready func() bool, out *lineWriter) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches us, and we stop it in order
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait(); logf.Close() }()
	out.printf("%s pid %d, logs in %s", name, cmd.Process.Pid, logPath)
	deadline := time.Now().Add(20 * time.Second)
	for !ready() {
		select {
		case err := <-c.done:
			c.done <- err
			return nil, fmt.Errorf("%s exited at start (%v); see %s", name, err, logPath)
		case <-ctx.Done():
			c.stop(out)
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop(out)
			return nil, fmt.Errorf("%s did not start within 20s; see %s", name, logPath)
		}
	}
	return c, nil
}

// stop sends SIGTERM (relayd drains), then kills by pid if it lingers.
func (c *child) stop(out *lineWriter) {
	if c.cmd.Process.Signal(syscall.SIGTERM) != nil {
		return
	}
	select {
	case err := <-c.done:
		c.done <- err
		out.printf("%s stopped", c.name)
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		c.done <- <-c.done
		out.printf("%s killed after 10s", c.name)
	}
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// startDemoRelay starts relayd on addr; extra are more flags.
func startDemoRelay(ctx context.Context, bin, dir, addr, ops string, extra []string, out *lineWriter) (*child, string, error) {
	cert := filepath.Join(dir, "relay-cert.pem")
	os.Remove(cert)
	args := append([]string{"--listen", addr, "--ops", ops, "--data", filepath.Join(dir, "relay-data"),
		"--self-signed-out", cert, "--relay-id", "demo-relay"}, extra...)
	c, err := startChild(ctx, "relayd", bin, args, filepath.Join(dir, "relayd.log"), func() bool {
		_, err := os.Stat(cert)
		return err == nil && dialable(addr)
	}, out)
	return c, cert, err
}

// printDemoMetrics shows a few relay metrics.
func printDemoMetrics(ops string, out *lineWriter) {
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		l := sc.Text()
		for _, p := range []string{"stapes_relay_messages_received_total", "stapes_relay_commit_seconds_count", "stapes_relay_commit_seconds_sum", "stapes_relay_connections", "stapes_relay_drops_total"} {
			if strings.HasPrefix(l, p) {
				out.printf("metric %s", l)
			}
		}
	}
}
