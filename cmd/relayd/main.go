// Command relayd runs one stapes relay node: WebSocket and QUIC sessions on
// one port, a local Pebble store, and an ops endpoint with /metrics,
// /healthz and /readyz.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "relayd: %v\nRun 'relayd --help' for usage.\n", err)
		return 2
	}
	log := newLogger(stderr, o.logLevel)
	if err := serve(o, log); err != nil {
		fmt.Fprintf(stderr, "relayd: %v\n", err)
		return 1
	}
	return 0
}

func serve(o *options, log *slog.Logger) error {
	kr := token.NewKeyring()
	if o.keyring != "" {
		var err error
		if kr, err = token.LoadKeyring(o.keyring); err != nil {
			return fmt.Errorf("loading --keyring %s: %w (create one with 'stapes keygen --out DIR')", o.keyring, err)
		}
	}
	limits, err := loadLimits(o.limits)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// A store that failed (a WAL write or sync error) cannot acknowledge
	// anything any more: stop, and let the supervisor restart relayd, which
	// recovers from what is durable.
	storeFailed := make(chan error, 1)
	st, err := storage.Open(o.dataDir, storage.Options{Logger: log, Registerer: reg, OnFatal: func(err error) {
		select {
		case storeFailed <- err:
		default:
		}
	}})
	if err != nil {
		return fmt.Errorf("opening store in --data %s: %w", o.dataDir, err)
	}
	defer st.Close()
	tcp, udp, err := listen(o)
	if err != nil {
		return err
	}
	defer tcp.Close()
	if udp != nil {
		defer udp.Close()
	}
	ctl, err := newControl(o, st, kr, tcp.Addr().String(), reg, log)
	if err != nil {
		return err
	}
	cfg := relay.Config{
		Store: st, Auth: kr, Limits: limits, RelayID: o.relayID, Logger: log, Registerer: reg,
		MaxFrame: o.maxFrame, HelloTimeout: o.helloTimeout, PingInterval: o.pingInterval,
		EphemeralQueue: o.ephemeralQueue, MaxConns: o.maxConns, AcceptRate: o.acceptRate, DrainRedirect: o.drainRedirect, DrainGrace: o.drainGrace,
		OriginPatterns: o.origins, Delay: o.delay,
	}
	if udp != nil {
		if cfg.QUICResetKey, err = quicResetKey(o.dataDir); err != nil {
			return err
		}
	}
	if ctl != nil {
		cfg.Devices = ctl.dir
	}
	secret, err := readSecret(o.mesh.peerSecretFile)
	if err != nil {
		return err
	}
	clientAddr := o.advertise
	if clientAddr == "" {
		clientAddr = advertised(tcp.Addr().String())
	}
	wsURL := "wss://" + clientAddr + relay.WSPath
	if o.plain {
		wsURL = "ws://" + clientAddr + relay.WSPath
	}
	msh, err := startMesh(o.mesh, o.relayID, clientAddr, wsURL, udp != nil, reg, log)
	if err != nil {
		return err
	}
	defer msh.Close()
	msh.configure(&cfg, secret)
	turnSrv := &turnHandle{}
	cfg.OnSessionEnded = turnSrv.EndSession
	srv, err := relay.New(cfg)
	if err != nil {
		return err
	}
	tlsConf, err := loadTLS(o, log)
	if err != nil {
		return err
	}
	if err := turnSrv.start(o.turn, tlsConf, o.relayID, o.mesh.region, reg, log, st, srv); err != nil {
		return err
	}
	defer turnSrv.Close()
	if ctl != nil {
		ctl.publish(turnSrv.published(ctl.advHost))
		if a := msh.gossipAddr(); a != "" {
			// Other relays find gossip seeds in the control plane's relay
			// map (the public map leaves this address out).
			ctl.publish(map[string]string{"gossip": a})
			msh.seedsFrom = func() []string { return gossipSeeds(ctl.dir.RelayMap(), o.relayID) }
		}
	}
	if err := msh.startWith(srv, tlsConf); err != nil {
		return err
	}
	relayMap := func() []byte { return msh.relayMap() }
	if ctl != nil {
		relayMap = func() []byte {
			if m := msh.relayMap(); m != nil {
				return m
			}
			return ctl.dir.RelayMap()
		}
	}
	ops, err := startOps(o.opsAddr, reg, srv, relayMap, log)
	if err != nil {
		return err
	}
	defer ops.Close()
	if ctl != nil {
		defer ctl.start(srv)()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(tcp, udp, tlsConf) }()
	quic := "off"
	if udp != nil {
		quic = udp.LocalAddr().String()
	}
	log.Info("relayd ready", "ws", tcp.Addr().String(), "quic", quic, "ops", ops.Addr(), "data", o.dataDir, "tls", tlsConf != nil)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case err := <-served:
		srv.Close()
		return err
	case err := <-storeFailed:
		srv.Close()
		<-served
		return fmt.Errorf("store failed, stopping so a restart recovers from durable state: %w", err)
	case sig := <-sigs:
		log.Info("draining", "signal", sig.String(), "timeout", o.drainTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("second signal, closing now", "signal", sig.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	msh.announceDraining(srv.Load())
	turnDrained := turnSrv.drain(ctx, log) // alongside: calls go on while sessions move
	if err := srv.Drain(ctx); err != nil {
		log.Warn("drain ended early", "err", err)
	}
	<-turnDrained
	cancel()
	srv.Close()
	<-served
	log.Info("relayd stopped")
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
