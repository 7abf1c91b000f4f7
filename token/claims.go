package token

import (
	"fmt"
	"unicode/utf8"
)

// Roles a token may name.
const (
	RoleClinician = "clinician"
	RolePatient   = "patient"
	RoleObserver  = "observer"
)

// MaxIDLen is the longest id claim (ten, sub, sid, dev, mdl, jti) in bytes,
// and the longest kid.
const MaxIDLen = 128

// Claims is the claim set of a session token.
type Claims struct {
	Tenant    string `json:"ten"`
	Subject   string `json:"sub"`           // short opaque id of the clinician / patient app, never a name
	Role      string `json:"role"`          // "clinician" | "patient" | "observer"
	Session   string `json:"sid"`           // fitting session id
	Device    string `json:"dev"`           // hearing-aid serial
	Model     string `json:"mdl"`           // hearing-aid model (selects safety limits)
	Relay     string `json:"rly,omitempty"` // the relay the control plane placed the session on (its first home)
	Expiry    int64  `json:"exp"`           // unix seconds
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf,omitempty"`
	ID        string `json:"jti"`
	KeyID     string `json:"-"` // filled by Verify from the header
}

// Validate reports whether c is a complete claim set: ten, sub, role, sid,
// exp and jti are present, role is one of the three roles, every id is at
// most MaxIDLen bytes of UTF-8 without control characters, and the times
// are not negative. dev and mdl are optional. It does not look at the
// clock; Verify does. Errors wrap ErrClaims and name the claim, never its
// value.
func (c Claims) Validate() error {
	ids := []struct {
		name     string
		v        string
		required bool
	}{
		{"ten", c.Tenant, true},
		{"sub", c.Subject, true},
		{"sid", c.Session, true},
		{"jti", c.ID, true},
		{"dev", c.Device, false},
		{"mdl", c.Model, false},
		{"rly", c.Relay, false},
	}
	for _, id := range ids {
		if id.v == "" {
			if id.required {
				return fmt.Errorf("%w: %s is missing", ErrClaims, id.name)
			}
			continue
		}
		if err := checkID(id.v); err != nil {
			return fmt.Errorf("%w: %s %v", ErrClaims, id.name, err)
		}
	}
	switch c.Role {
	case RoleClinician, RolePatient, RoleObserver:
	case "":
		return fmt.Errorf("%w: role is missing", ErrClaims)
	default:
		return fmt.Errorf("%w: role is not clinician, patient or observer", ErrClaims)
	}
	switch {
	case c.Expiry == 0:
		return fmt.Errorf("%w: exp is missing", ErrClaims)
	case c.Expiry < 0:
		return fmt.Errorf("%w: exp is negative", ErrClaims)
	case c.IssuedAt < 0:
		return fmt.Errorf("%w: iat is negative", ErrClaims)
	case c.NotBefore < 0:
		return fmt.Errorf("%w: nbf is negative", ErrClaims)
	case c.NotBefore > c.Expiry:
		return fmt.Errorf("%w: nbf is after exp", ErrClaims)
	}
	return nil
}

// checkID reports why s is not an acceptable id or kid. The reason reads
// after the claim's name and never quotes s.
func checkID(s string) error {
	if len(s) > MaxIDLen {
		return fmt.Errorf("is longer than %d bytes", MaxIDLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains a control character")
		}
	}
	return nil
}

// decodeClaims parses the signed claim set strictly: a single JSON object
// whose known members each appear at most once with the right JSON type.
// Unknown members are ignored. Member names match exactly (encoding/json
// alone would also accept "EXP" for "exp").
func decodeClaims(data []byte) (Claims, error) {
	var c Claims
	members, err := decodeObject(data)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: claim set %v", ErrClaims, err)
	}
	for _, f := range c.fields() {
		raw, ok := members[f.name]
		if !ok {
			continue
		}
		if err := decodeMember(raw, f.dst); err != nil {
			return Claims{}, fmt.Errorf("%w: %s %v", ErrClaims, f.name, err)
		}
	}
	return c, nil
}

// claimField is one JSON member of Claims and where it decodes to.
type claimField struct {
	name string
	dst  any // *string or *int64
}

// fields lists every JSON member of Claims. TestClaimFieldsComplete keeps
// it in step with the struct tags.
func (c *Claims) fields() []claimField {
	return []claimField{
		{"ten", &c.Tenant},
		{"sub", &c.Subject},
		{"role", &c.Role},
		{"sid", &c.Session},
		{"dev", &c.Device},
		{"mdl", &c.Model},
		{"rly", &c.Relay},
		{"exp", &c.Expiry},
		{"iat", &c.IssuedAt},
		{"nbf", &c.NotBefore},
		{"jti", &c.ID},
	}
}
