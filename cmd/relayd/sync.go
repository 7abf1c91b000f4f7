package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
)

// startControl connects the relay to controld when --control-url is set:
// the outbox syncer and the directory (register, heartbeat, token keys).
// The returned func stops both and waits.
func startControl(o *options, st *storage.Store, srv *relay.Server, kr *token.Keyring, listen string, reg prometheus.Registerer, log *slog.Logger) (func(), error) {
	if o.controlURL == "" {
		log.Info("no --control-url: session logs stay on this relay (no sync to controld)")
		return func() {}, nil
	}
	raw, err := os.ReadFile(o.credFile)
	if err != nil {
		return nil, fmt.Errorf("reading --node-credential-file: %w", err)
	}
	cred := strings.TrimSpace(string(raw))
	sy, err := control.NewSyncer(control.SyncConfig{Outbox: st, Relay: o.relayID, URL: o.controlURL,
		Credential: cred, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	adv := o.advertise
	if adv == "" {
		adv = listen
		if host, port, err := net.SplitHostPort(listen); err == nil && (host == "" || host == "::" || host == "0.0.0.0") {
			adv = net.JoinHostPort("localhost", port)
		}
	}
	scheme := "wss"
	addrs := map[string]string{}
	if o.plain {
		scheme = "ws"
	} else if !o.noQUIC {
		addrs["quic"] = "quic://" + adv
	}
	addrs["ws"] = scheme + "://" + adv + relay.WSPath
	dir, err := control.NewDirectory(control.DirectoryConfig{URL: o.controlURL, Credential: cred, Addresses: addrs,
		Version: "dev", Keyring: kr, CacheFile: filepath.Join(o.dataDir, "keyring-cache.json"),
		Load: srv.Load, Draining: func() bool { return !srv.Ready() }, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := dir.LoadCache(); err != nil && !os.IsNotExist(err) {
		log.Warn("reading the token key cache failed", "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sy.Run(ctx) }()
	go func() { defer wg.Done(); dir.Run(ctx) }()
	return func() { cancel(); wg.Wait() }, nil
}
