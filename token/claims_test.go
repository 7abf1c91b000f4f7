package token

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	tests := []struct {
		name   string
		modify func(*Claims)
		want   error // nil: valid
		reason string
	}{
		{name: "valid", modify: func(c *Claims) {}},
		{name: "no device or model", modify: func(c *Claims) { c.Device, c.Model = "", "" }},
		{name: "patient", modify: func(c *Claims) { c.Role = RolePatient }},
		{name: "observer", modify: func(c *Claims) { c.Role = RoleObserver }},
		{name: "id at limit", modify: func(c *Claims) { c.Session = long[1:] }},
		{name: "nbf equal exp", modify: func(c *Claims) { c.NotBefore = c.Expiry }},
		{name: "no tenant", modify: func(c *Claims) { c.Tenant = "" }, want: ErrClaims, reason: "ten is missing"},
		{name: "no subject", modify: func(c *Claims) { c.Subject = "" }, want: ErrClaims, reason: "sub is missing"},
		{name: "no role", modify: func(c *Claims) { c.Role = "" }, want: ErrClaims, reason: "role is missing"},
		{name: "no session", modify: func(c *Claims) { c.Session = "" }, want: ErrClaims, reason: "sid is missing"},
		{name: "no id", modify: func(c *Claims) { c.ID = "" }, want: ErrClaims, reason: "jti is missing"},
		{name: "no expiry", modify: func(c *Claims) { c.Expiry = 0 }, want: ErrClaims, reason: "exp is missing"},
		{name: "bad role", modify: func(c *Claims) { c.Role = "admin" }, want: ErrClaims, reason: "role is not"},
		{name: "role wrong case", modify: func(c *Claims) { c.Role = "Clinician" }, want: ErrClaims, reason: "role is not"},
		{name: "tenant too long", modify: func(c *Claims) { c.Tenant = long }, want: ErrClaims, reason: "ten is longer"},
		{name: "device too long", modify: func(c *Claims) { c.Device = long }, want: ErrClaims, reason: "dev is longer"},
		{name: "model too long", modify: func(c *Claims) { c.Model = long }, want: ErrClaims, reason: "mdl is longer"},
		{name: "jti too long", modify: func(c *Claims) { c.ID = long }, want: ErrClaims, reason: "jti is longer"},
		{name: "control character", modify: func(c *Claims) { c.Subject = "a\nb" }, want: ErrClaims, reason: "sub contains a control"},
		{name: "invalid utf8", modify: func(c *Claims) { c.Session = "a\xffb" }, want: ErrClaims, reason: "sid is not valid UTF-8"},
		{name: "negative exp", modify: func(c *Claims) { c.Expiry = -1 }, want: ErrClaims, reason: "exp is negative"},
		{name: "negative iat", modify: func(c *Claims) { c.IssuedAt = -1 }, want: ErrClaims, reason: "iat is negative"},
		{name: "negative nbf", modify: func(c *Claims) { c.NotBefore = -1 }, want: ErrClaims, reason: "nbf is negative"},
		{name: "nbf after exp", modify: func(c *Claims) { c.NotBefore = c.Expiry + 1 }, want: ErrClaims, reason: "nbf is after exp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validClaims()
			tt.modify(&c)
			err := c.Validate()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Validate() = %q, want it to say %q", err, tt.reason)
			}
			if strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), "admin") {
				t.Errorf("Validate() = %q quotes a claim value", err)
			}
		})
	}
}

// TestClaimFieldsComplete keeps Claims.fields in step with the JSON tags, so
// a claim added to the struct is also decoded by Verify.
func TestClaimFieldsComplete(t *testing.T) {
	var want []string
	typ := reflect.TypeFor[Claims]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name != "-" {
			want = append(want, name)
		}
	}
	var c Claims
	var got []string
	for _, f := range c.fields() {
		got = append(got, f.name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Claims.fields() = %v, want %v", got, want)
	}
}
