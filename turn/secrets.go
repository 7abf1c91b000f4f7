package turn

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
)

// LoadSecrets reads a shared-secret file: one secret per line, newest
// first (Credentials.Secrets' order); blank lines and lines starting with
// # are skipped. relayd and controld read the same file format.
func LoadSecrets(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out, err := ParseSecrets(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// ParseSecrets parses the contents of a shared-secret file and checks
// every secret's length.
func ParseSecrets(b []byte) ([][]byte, error) {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		out = append(out, bytes.Clone(line))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, ErrNoSecrets
	}
	if err := (&Credentials{Secrets: out}).checkSecrets(); err != nil {
		return nil, err
	}
	return out, nil
}

// Check reports whether c has secrets to mint and verify with, each long
// enough (ErrNoSecrets, ErrWeakSecret).
func (c *Credentials) Check() error { return c.checkSecrets() }
