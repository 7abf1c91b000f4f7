package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"strings"
)

func init() {
	adminCmds = append(adminCmds, adminCmd{name: "seed-demo",
		summary: "create a demo clinic: a clinician (prints the login) and two patients with a device each, in the clinician's care",
		usage:   "[--tenant demo] [--email doc@demo.example] [--password-file FILE]",
		flags: func(fs *flag.FlagSet) func(context.Context, *adminConn, *env) error {
			c := &seedCmd{}
			fs.StringVar(&c.tenant, "tenant", "demo", "tenant `ID` of the demo clinic")
			fs.StringVar(&c.email, "email", "", "the clinician's login `ADDRESS` (default doc@TENANT.example)")
			fs.StringVar(&c.pwFile, "password-file", "", "`FILE` holding the clinician's password (default: a random one, printed)")
			fs.StringVar(&c.model, "model", "demo-m1", "hearing-aid `MODEL` of the demo devices")
			return c.run
		}})
}

type seedCmd struct {
	tenant, email, pwFile, model string
}

// run creates what is missing and keeps what exists, so it can run again.
func (s *seedCmd) run(ctx context.Context, c *adminConn, e *env) error {
	if s.email == "" {
		s.email = "doc@" + s.tenant + ".example"
	}
	password := rand.Text()[:20]
	if s.pwFile != "" {
		b, err := os.ReadFile(s.pwFile)
		if err != nil {
			return fmt.Errorf("reading --password-file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	t := "/v1/operator/tenants/" + pathEscape(s.tenant)
	step := func(what, method, path string, body any) (created bool, err error) {
		err = c.call(ctx, method, path, body, nil)
		if exists(err) {
			fmt.Fprintf(e.stdout, "  %s: exists, kept\n", what)
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(e.stdout, "  %s: created\n", what)
		return true, nil
	}
	fmt.Fprintf(e.stdout, "seeding demo clinic %q at %s\n", s.tenant, c.api)
	if _, err := step("tenant "+s.tenant, "POST", "/v1/operator/tenants", map[string]string{"id": s.tenant, "name": "Demo clinic " + s.tenant}); err != nil {
		return err
	}
	newClinician, err := step("clinician c1", "POST", t+"/clinicians",
		map[string]string{"id": "c1", "email": s.email, "password": password, "display_name": "Demo Clinician"})
	if err != nil {
		return err
	}
	patients := []struct{ id, name, serial string }{
		{"p1", "Demo Patient One", s.tenant + "-HA-1"},
		{"p2", "Demo Patient Two", s.tenant + "-HA-2"},
	}
	for _, p := range patients {
		if _, err := step("patient "+p.id, "POST", t+"/patients", map[string]string{"id": p.id, "display_name": p.name}); err != nil {
			return err
		}
		if _, err := step("device "+p.serial, "POST", t+"/devices",
			map[string]string{"serial": p.serial, "model": s.model, "firmware": "1.0", "patient_id": p.id}); err != nil {
			return err
		}
		if err := c.call(ctx, "POST", t+"/care", map[string]string{"clinician_id": "c1", "patient_id": p.id}, nil); err != nil {
			return fmt.Errorf("care c1→%s: %w", p.id, err)
		}
		fmt.Fprintf(e.stdout, "  care c1→%s: in care\n", p.id)
	}
	fmt.Fprintf(e.stdout, "\ndemo login (POST %s/v1/login):\n  email:    %s\n", c.api, s.email)
	if newClinician {
		fmt.Fprintf(e.stdout, "  password: %s\n", password)
	} else {
		fmt.Fprintf(e.stdout, "  password: unchanged (the clinician existed already)\n")
	}
	fmt.Fprintf(e.stdout, "  patients: p1 (device %s), p2 (device %s)\n", patients[0].serial, patients[1].serial)
	return nil
}
