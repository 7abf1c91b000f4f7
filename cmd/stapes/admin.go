package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// The admin verb drives controld's operator API: stapes admin <command>.
// Each command is an adminCmd in this file or admin_seed.go; the common
// flags (--api, --operator-token-file, --ca-cert) may come before or after
// the command name.

func init() {
	register(verb{
		name:    "admin",
		summary: "manage tenants, clinicians, patients, devices, care and relays over controld's operator API",
		usage:   "[--api URL] [--operator-token-file FILE] [--ca-cert PEM] COMMAND [flags]\n\nCommands: create-tenant, create-clinician, create-patient, create-device, add-care,\ncreate-relay, seed-demo. Run 'stapes admin COMMAND --help' for a command's flags.",
		flags: func(fs *flag.FlagSet) runFunc {
			c := &adminConn{}
			c.flags(fs, nil)
			return c.dispatch
		},
	})
}

// adminCmd is one admin command.
type adminCmd struct {
	name    string
	summary string
	usage   string
	flags   func(fs *flag.FlagSet) func(ctx context.Context, c *adminConn, e *env) error
}

var adminCmds []adminCmd

func adminNames() []string {
	var names []string
	for _, c := range adminCmds {
		names = append(names, c.name)
	}
	slices.Sort(names)
	return names
}

// adminConn is how admin reaches controld.
type adminConn struct {
	api       string
	tokenFile string
	caCert    string

	token string
	hc    *http.Client
}

// flags defines the common flags on fs, defaulting to prev's values (the
// ones given before the command name) or to the environment.
func (c *adminConn) flags(fs *flag.FlagSet, prev *adminConn) {
	api, tokenFile, caCert := envOr("STAPES_API", "https://localhost:8080"), os.Getenv("STAPES_OPERATOR_TOKEN_FILE"), os.Getenv("STAPES_CA_CERT")
	if prev != nil {
		api, tokenFile, caCert = prev.api, prev.tokenFile, prev.caCert
	}
	fs.StringVar(&c.api, "api", api, "controld's base `URL` (env STAPES_API)")
	fs.StringVar(&c.tokenFile, "operator-token-file", tokenFile, "`FILE` holding controld's operator token (env STAPES_OPERATOR_TOKEN_FILE; required)")
	fs.StringVar(&c.caCert, "ca-cert", caCert, "PEM `FILE` of a certificate to trust, e.g. controld's self-signed controld-cert.pem (env STAPES_CA_CERT)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// dispatch parses the command's own flags and runs it.
func (c *adminConn) dispatch(ctx context.Context, e *env) error {
	if len(e.args) == 0 {
		return usagef("a command is required: %s", strings.Join(adminNames(), ", "))
	}
	name := e.args[0]
	i := slices.IndexFunc(adminCmds, func(a adminCmd) bool { return a.name == name })
	if i < 0 {
		return usagef("unknown command %q (commands: %s)", name, strings.Join(adminNames(), ", "))
	}
	cmd := adminCmds[i]
	fs := flag.NewFlagSet("stapes admin "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	conn := &adminConn{}
	conn.flags(fs, c)
	run := cmd.flags(fs)
	if err := fs.Parse(e.args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(e.stdout, "Usage: stapes admin %s %s\n\n%s\n\nFlags:\n", name, cmd.usage, cmd.summary)
			fs.SetOutput(e.stdout)
			fs.PrintDefaults()
			return nil
		}
		return usagef("%s: %v", name, err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", name, fs.Arg(0))
	}
	if err := conn.open(); err != nil {
		return err
	}
	return run(ctx, conn, e)
}

// open reads the operator token and makes the HTTP client.
func (c *adminConn) open() error {
	u, err := url.Parse(c.api)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return usagef("--api must be http(s)://host:port")
	}
	c.api = strings.TrimRight(c.api, "/")
	if c.tokenFile == "" {
		return usagef("--operator-token-file is required")
	}
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return fmt.Errorf("reading --operator-token-file: %w", err)
	}
	c.token = strings.TrimSpace(string(b))
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.caCert != "" {
		pemBytes, err := os.ReadFile(c.caCert)
		if err != nil {
			return fmt.Errorf("reading --ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("--ca-cert %s holds no PEM certificate", c.caCert)
		}
		tc.RootCAs = pool
	}
	c.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}
	return nil
}

// apiError is controld's error answer.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("controld answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("controld answered %d %s: %s", e.Status, e.Code, e.Message)
}

// call sends body (JSON) and decodes the answer into out (if not nil).
// A non-2xx answer is an *apiError.
func (c *adminConn) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.api+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("reaching controld at %s: %w", c.api, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading controld's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &apiError{Status: resp.StatusCode}
		_ = json.Unmarshal(raw, ae)
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("controld's answer is not the expected JSON: %w", err)
		}
	}
	return nil
}

// exists reports whether err is controld's "already exists" answer.
func exists(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusConflict
}

func pathEscape(s string) string { return url.PathEscape(s) }

// need returns a usage error naming the first empty flag.
func need(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return usagef("--%s is required", pairs[i])
		}
	}
	return nil
}

func init() {
	adminCmds = append(adminCmds,
		adminCmd{name: "create-tenant", summary: "create a tenant (clinic)", usage: "--id T --name NAME",
			flags: func(fs *flag.FlagSet) func(context.Context, *adminConn, *env) error {
				id := fs.String("id", "", "tenant `ID` (required)")
				name := fs.String("name", "", "clinic `NAME` (required)")
				return func(ctx context.Context, c *adminConn, e *env) error {
					if err := need("id", *id, "name", *name); err != nil {
						return err
					}
					if err := c.call(ctx, "POST", "/v1/operator/tenants", map[string]string{"id": *id, "name": *name}, nil); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "created tenant %s\n", *id)
					return nil
				}
			}},
		adminCmd{name: "create-clinician", summary: "create a clinician who logs in with an e-mail and password",
			usage: "--tenant T --id C --email E (--password-file FILE | --password P) [--role clinician|admin] [--display-name NAME]",
			flags: func(fs *flag.FlagSet) func(context.Context, *adminConn, *env) error {
				tenant := fs.String("tenant", "", "tenant `ID` (required)")
				id := fs.String("id", "", "clinician `ID` (required)")
				email := fs.String("email", "", "login e-mail `ADDRESS` (required)")
				pwFile := fs.String("password-file", "", "`FILE` holding the password (one line)")
				pw := fs.String("password", "", "the password (visible to other users of this machine: prefer --password-file)")
				role := fs.String("role", "clinician", "`ROLE`: clinician or admin")
				display := fs.String("display-name", "", "staff `NAME` shown in the portal")
				return func(ctx context.Context, c *adminConn, e *env) error {
					if err := need("tenant", *tenant, "id", *id, "email", *email); err != nil {
						return err
					}
					password := *pw
					if *pwFile != "" {
						if password != "" {
							return usagef("--password and --password-file exclude each other")
						}
						b, err := os.ReadFile(*pwFile)
						if err != nil {
							return fmt.Errorf("reading --password-file: %w", err)
						}
						password = strings.TrimRight(string(b), "\r\n")
					}
					if password == "" {
						return usagef("--password-file or --password is required")
					}
					body := map[string]string{"id": *id, "email": *email, "password": password, "role": *role, "display_name": *display}
					if err := c.call(ctx, "POST", "/v1/operator/tenants/"+pathEscape(*tenant)+"/clinicians", body, nil); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "created clinician %s in tenant %s\n", *id, *tenant)
					return nil
				}
			}},
		adminCmd{name: "create-patient", summary: "create a patient", usage: "--tenant T --id P [--display-name NAME]",
			flags: func(fs *flag.FlagSet) func(context.Context, *adminConn, *env) error {
				tenant := fs.String("tenant", "", "tenant `ID` (required)")
				id := fs.String("id", "", "short opaque patient `ID`, not derived from the name (required)")
				display := fs.String("display-name", "", "the `NAME` the clinic shows (patient data: optional)")
				return func(ctx context.Context, c *adminConn, e *env) error {
					if err := need("tenant", *tenant, "id", *id); err != nil {
						return err
					}
					body := map[string]string{"id": *id, "display_name": *display}
					if err := c.call(ctx, "POST", "/v1/operator/tenants/"+pathEscape(*tenant)+"/patients", body, nil); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "created patient %s in tenant %s\n", *id, *tenant)
					return nil
				}
			}},
		adminCmd{name: "create-device", summary: "create a hearing aid, optionally assigned to a patient",
			usage: "--tenant T --serial S --model M [--firmware V] [--patient P]",
			flags: func(fs *flag.FlagSet) func(context.Context, *adminConn, *env) error {
				tenant := fs.String("tenant", "", "tenant `ID` (required)")
				serial := fs.String("serial", "", "device `SERIAL` (required)")
				model := fs.String("model", "", "device `MODEL` (selects its safety limits; required)")
				firmware := fs.String("firmware", "", "firmware `VERSION`")
				patient := fs.String("patient", "", "patient `ID` the device belongs to")
				return func(ctx context.Context, c *adminConn, e *env) error {
					if err := need("tenant", *tenant, "serial", *serial, "model", *model); err != nil {
						return err
					}
					body := map[string]string{"serial": *serial, "model": *model, "firmware": *firmware, "patient_id": *patient}
					if err := c.call(ctx, "POST", "/v1/operator/tenants/"+pathEscape(*tenant)+"/devices", body, nil); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "created device %s in tenant %s\n", *serial, *tenant)
					return nil
				}
			}},
		adminCmd{name: "add-care", summary: "put a patient in a clinician's care", usage: "--tenant T --clinician C --patient P",
			flags: func(fs *flag.FlagSet) func(context.Context, *adminConn, *env) error {
				tenant := fs.String("tenant", "", "tenant `ID` (required)")
				clinician := fs.String("clinician", "", "clinician `ID` (required)")
				patient := fs.String("patient", "", "patient `ID` (required)")
				return func(ctx context.Context, c *adminConn, e *env) error {
					if err := need("tenant", *tenant, "clinician", *clinician, "patient", *patient); err != nil {
						return err
					}
					body := map[string]string{"clinician_id": *clinician, "patient_id": *patient}
					if err := c.call(ctx, "POST", "/v1/operator/tenants/"+pathEscape(*tenant)+"/care", body, nil); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "patient %s is in clinician %s's care (tenant %s)\n", *patient, *clinician, *tenant)
					return nil
				}
			}},
		adminCmd{name: "create-relay", summary: "create a relay node and write its node credential (shown once)",
			usage: "--id R --region G [--tenant T] [--capacity N] [--rotate] [--credential-out FILE]",
			flags: func(fs *flag.FlagSet) func(context.Context, *adminConn, *env) error {
				id := fs.String("id", "", "relay `ID`: relayd's --relay-id (required)")
				region := fs.String("region", "", "`REGION` (required)")
				tenant := fs.String("tenant", "", "owning tenant `ID` (default: shared by every tenant)")
				capacity := fs.Int("capacity", 0, "sessions the relay is sized for (0: unknown)")
				rotate := fs.Bool("rotate", false, "issue a new credential for an existing relay (the old one stops working)")
				out := fs.String("credential-out", "", "`FILE` to write the credential to (mode 0600; for relayd's --node-credential-file); default: print it")
				return func(ctx context.Context, c *adminConn, e *env) error {
					if err := need("id", *id, "region", *region); err != nil {
						return err
					}
					var ans struct {
						Credential string `json:"credential"`
					}
					body := map[string]any{"id": *id, "region": *region, "tenant_id": *tenant, "capacity": *capacity, "rotate": *rotate}
					if err := c.call(ctx, "POST", "/v1/operator/relays", body, &ans); err != nil {
						return err
					}
					if *out == "" {
						fmt.Fprintln(e.stdout, ans.Credential)
						return nil
					}
					if err := os.WriteFile(*out, []byte(ans.Credential+"\n"), 0o600); err != nil {
						return fmt.Errorf("writing --credential-out: %w", err)
					}
					fmt.Fprintf(e.stdout, "created relay %s; its node credential is in %s\n", *id, *out)
					return nil
				}
			}},
	)
}
