package main

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"

	"github.com/stapes-relay/stapes/internal/selfsigned"
)

// loadTLS returns the API's TLS config: the given certificate, none with
// --plain, else a self-signed one written to --self-signed-out
// (internal/selfsigned, shared with relayd without linking the relay).
func loadTLS(o *options, log *slog.Logger) (*tls.Config, error) {
	if o.plain {
		log.Warn("serving the API over plain HTTP: local development only")
		return nil, nil
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	cert, err := selfsigned.New("localhost", "127.0.0.1", "::1")
	if err != nil {
		return nil, err
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if err := os.WriteFile(o.certOut, p, 0o644); err != nil {
		return nil, fmt.Errorf("writing the self-signed certificate to --self-signed-out: %w", err)
	}
	log.Warn("using a self-signed certificate generated for local use; clients must trust it explicitly; use --tls-cert/--tls-key in production", "cert_file", o.certOut)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
