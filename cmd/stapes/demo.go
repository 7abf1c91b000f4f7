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

	"github.com/stapes-relay/stapes/token"
)

func init() {
	register(verb{
		name:    "demo",
		summary: "run the whole system locally: relayd, a simulated patient and a clinician",
		usage:   "[--dir DIR] [--listen ADDR] [--commands N | --forever]",
		flags: func(fs *flag.FlagSet) runFunc {
			d := &demoCmd{}
			fs.StringVar(&d.dir, "dir", ".stapes-demo", "working `DIR`: keys, relay data, logs")
			fs.StringVar(&d.listen, "listen", "127.0.0.1:8443", "relayd address (TCP for WebSocket, UDP for QUIC); a busy port is replaced by a free one")
			fs.StringVar(&d.ops, "ops", "127.0.0.1:9090", "relayd ops address (/metrics, /healthz, /readyz)")
			fs.IntVar(&d.commands, "commands", 10, "config commands the clinician sends")
			fs.BoolVar(&d.forever, "forever", false, "keep sending until interrupted")
			fs.StringVar(&d.relayd, "relayd", "", "relayd binary (default: next to this stapes binary, then $PATH)")
			return d.run
		},
	})
}

type demoCmd struct {
	dir, listen, ops, relayd string
	commands                 int
	forever                  bool
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
	rd, err := startDemoRelay(ctx, bin, d.dir, addr, opsAddr, keyring, out)
	if err != nil {
		return err
	}
	defer rd.stop(out)

	// A new session and hearing aid each run: the simulated aid starts at
	// config v0, and the relay keeps device state across runs.
	suffix := strings.ToLower(rand.Text()[:6])
	session := "demo-" + suffix
	cf := connFlags{key: keyFile, tenant: "demo-clinic", session: session, device: "HA-" + suffix, model: "demo-ric", cert: rd.cert}
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
	pctx, stopPatient := context.WithCancel(ctx)
	defer stopPatient()
	var wg sync.WaitGroup
	var perr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		p := &patientSim{bleDelay: 40 * time.Millisecond, telemetry: time.Second}
		perr = p.run(pctx, pcfg, &lineWriter{w: e.stdout, prefix: "[patient]   "})
	}()
	n := d.commands
	if d.forever {
		n = 0
	}
	c := &clinicianSim{commands: n, interval: 300 * time.Millisecond, param: "gain.l.2k", step: 20}
	res, cerr := c.runCount(ctx, ccfg, &lineWriter{w: e.stdout, prefix: "[clinician] "})
	stopPatient()
	wg.Wait()
	if cerr != nil && ctx.Err() == nil {
		return fmt.Errorf("clinician: %w", cerr)
	}
	if perr != nil && ctx.Err() == nil && !errors.Is(perr, context.Canceled) {
		return fmt.Errorf("patient: %w", perr)
	}
	out.printf("done: %d applied, %d rejected by the hearing aid, %d refused by the relay", res.applied, res.rejected, res.refused)
	printDemoMetrics(opsAddr, out)
	if ctx.Err() == nil && !d.forever && res.applied == 0 {
		return errors.New("no command was applied; see " + filepath.Join(d.dir, "relayd.log"))
	}
	return nil
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

func (d *demoCmd) relaydPath() (string, error) {
	if d.relayd != "" {
		return d.relayd, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "relayd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("relayd")
	if err != nil {
		return "", errors.New("relayd binary not found next to stapes or in $PATH; run 'make build' (or pass --relayd)")
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

// demoRelay is the relayd child process.
type demoRelay struct {
	cmd  *exec.Cmd
	cert string
	done chan error
}

func startDemoRelay(ctx context.Context, bin, dir, addr, ops, keyring string, out *lineWriter) (*demoRelay, error) {
	cert := filepath.Join(dir, "relay-cert.pem")
	os.Remove(cert)
	logPath := filepath.Join(dir, "relayd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--listen", addr, "--ops", ops, "--data", filepath.Join(dir, "relay-data"),
		"--keyring", keyring, "--self-signed-out", cert, "--relay-id", "demo-relay")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches us, and we drain it
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting relayd: %w", err)
	}
	rd := &demoRelay{cmd: cmd, cert: cert, done: make(chan error, 1)}
	go func() { rd.done <- cmd.Wait(); logf.Close() }()
	out.printf("relayd pid %d on %s (WebSocket + QUIC), logs in %s", cmd.Process.Pid, addr, logPath)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(cert); err == nil {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				return rd, nil
			}
		}
		select {
		case err := <-rd.done:
			return nil, fmt.Errorf("relayd exited at start (%v); see %s", err, logPath)
		case <-ctx.Done():
			rd.stop(out)
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			rd.stop(out)
			return nil, fmt.Errorf("relayd did not start within 15s; see %s", logPath)
		}
	}
}

// stop drains relayd with SIGTERM, then kills it by pid if it lingers.
func (rd *demoRelay) stop(out *lineWriter) {
	if rd.cmd.Process.Signal(syscall.SIGTERM) != nil {
		return
	}
	select {
	case <-rd.done:
		out.printf("relayd drained and stopped")
	case <-time.After(10 * time.Second):
		rd.cmd.Process.Kill()
		<-rd.done
		out.printf("relayd killed after 10s")
	}
	rd.done <- nil
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
