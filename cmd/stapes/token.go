package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"time"

	"github.com/stapes-relay/stapes/token"
)

// maxTTL bounds --ttl: session tokens are short-lived. (Flag help and
// messages spell it "24h".)
const maxTTL = 24 * time.Hour

func init() {
	register(verb{
		name:    "token",
		summary: "mint a session token with a signing key and print it",
		usage:   "--key FILE --tenant T --subject S --role ROLE --session SID [--device SERIAL --model MODEL] [--ttl 1h] [--id JTI]",
		flags: func(fs *flag.FlagSet) runFunc {
			c := &tokenCmd{}
			fs.StringVar(&c.key, "key", "", "signing key `FILE` written by stapes keygen (required)")
			fs.StringVar(&c.tenant, "tenant", "", "tenant (clinic) `ID` (required)")
			fs.StringVar(&c.subject, "subject", "", "opaque `ID` of the clinician or patient app, never a name (required)")
			fs.StringVar(&c.role, "role", "", "`ROLE`: clinician, patient or observer (required)")
			fs.StringVar(&c.session, "session", "", "fitting session `ID` (required)")
			fs.StringVar(&c.device, "device", "", "hearing-aid `SERIAL` (with --model)")
			fs.StringVar(&c.model, "model", "", "hearing-aid `MODEL`, selects its safety limits (with --device)")
			fs.DurationVar(&c.ttl, "ttl", time.Hour, "lifetime, at most 24h")
			fs.StringVar(&c.id, "id", "", "token `ID` (jti) (default random)")
			return c.run
		},
	})
}

type tokenCmd struct {
	key, tenant, subject, role, session string
	device, model                       string
	ttl                                 time.Duration
	id                                  string
}

// run prints a token on stdout: the one place stapes writes a token out,
// because the user asked for it.
func (c *tokenCmd) run(ctx context.Context, e *env) error {
	if err := c.check(e); err != nil {
		return err
	}
	signer, err := token.LoadSigner(c.key)
	if err != nil {
		return err
	}
	id := c.id
	if id == "" {
		id = rand.Text()
	}
	now := time.Now()
	tok, err := signer.Sign(token.Claims{
		Tenant:   c.tenant,
		Subject:  c.subject,
		Role:     c.role,
		Session:  c.session,
		Device:   c.device,
		Model:    c.model,
		Expiry:   now.Add(c.ttl).Unix(),
		IssuedAt: now.Unix(),
		ID:       id,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", tok)
	return err
}

// check validates the flags, naming the flag at fault.
func (c *tokenCmd) check(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	ids := []struct{ flag, v string }{
		{"key", c.key}, {"tenant", c.tenant}, {"subject", c.subject}, {"role", c.role}, {"session", c.session},
	}
	for _, f := range ids {
		if f.v == "" {
			return usagef("--%s is required", f.flag)
		}
	}
	switch c.role {
	case token.RoleClinician, token.RolePatient, token.RoleObserver:
	default:
		return usagef("--role must be clinician, patient or observer")
	}
	if (c.device == "") != (c.model == "") {
		return usagef("--device and --model go together")
	}
	if c.ttl <= 0 || c.ttl > maxTTL {
		return usagef("--ttl must be positive and at most 24h")
	}
	for _, f := range []struct{ flag, v string }{
		{"tenant", c.tenant}, {"subject", c.subject}, {"session", c.session},
		{"device", c.device}, {"model", c.model}, {"id", c.id},
	} {
		if len(f.v) > token.MaxIDLen {
			return usagef("--%s must be at most %d bytes", f.flag, token.MaxIDLen)
		}
	}
	return nil
}
