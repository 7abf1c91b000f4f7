package wire

import (
	"encoding/binary"
	"fmt"
)

// Config is the payload of a KindConfig message and of WELCOME's device
// config snapshot: the device config version it is based on (or, in a
// snapshot, the current version) and parameter values.
//
// Encoding (same field layout as frames, without the type byte):
//
//	1: base version (uint)
//	2: parameter, repeated: uvarint(len(name)) name varint(value)
//
// Values are signed integers in the parameter's unit (gains in 0.1 dB).
type Config struct {
	BaseVersion uint64
	Params      []Param
}

// Param is one device parameter.
type Param struct {
	Name  string
	Value int64
}

// Config limits.
const (
	MaxParams       = 256
	MaxParamNameLen = 64
)

const (
	configTagBase  = 1
	configTagParam = 2
)

// AppendConfig encodes c and appends it to dst.
func AppendConfig(dst []byte, c *Config) []byte {
	dst = appendUintAlways(dst, configTagBase, c.BaseVersion)
	for _, p := range c.Params {
		var tmp [binary.MaxVarintLen64]byte
		vl := binary.PutVarint(tmp[:], p.Value)
		n := uvarintLen(uint64(len(p.Name))) + len(p.Name) + vl
		dst = append(dst, configTagParam)
		dst = binary.AppendUvarint(dst, uint64(n))
		dst = binary.AppendUvarint(dst, uint64(len(p.Name)))
		dst = append(dst, p.Name...)
		dst = append(dst, tmp[:vl]...)
	}
	return dst
}

// DecodeConfig parses a Config. Parameter names must be unique, non-empty
// and at most MaxParamNameLen bytes; there are at most MaxParams.
func DecodeConfig(b []byte) (Config, error) {
	var c Config
	seenBase := false
	names := make(map[string]struct{})
	for len(b) > 0 {
		tag := b[0]
		n, k, err := fieldLen(b[1:])
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		if n > uint64(len(b)-1-k) {
			return c, fmt.Errorf("config: %w", ErrTruncated)
		}
		val := b[1+k : 1+k+int(n)]
		b = b[1+k+int(n):]
		switch tag {
		case configTagBase:
			if seenBase {
				return c, fmt.Errorf("config: %w: duplicate base version", ErrMalformed)
			}
			seenBase = true
			v, err := uintField(val, 1<<63-1)
			if err != nil {
				return c, fmt.Errorf("config: base version: %w", err)
			}
			c.BaseVersion = v
		case configTagParam:
			p, err := decodeParam(val)
			if err != nil {
				return c, err
			}
			if _, dup := names[p.Name]; dup {
				return c, fmt.Errorf("config: %w: duplicate parameter", ErrMalformed)
			}
			if len(c.Params) == MaxParams {
				return c, fmt.Errorf("config: %w: more than %d parameters", ErrMalformed, MaxParams)
			}
			names[p.Name] = struct{}{}
			c.Params = append(c.Params, p)
		}
	}
	if !seenBase {
		return c, fmt.Errorf("config: %w: no base version", ErrMalformed)
	}
	return c, nil
}

func decodeParam(val []byte) (Param, error) {
	var p Param
	n, k, err := fieldLen(val)
	if err != nil {
		return p, fmt.Errorf("config: parameter: %w", err)
	}
	if n > uint64(len(val)-k) {
		return p, fmt.Errorf("config: parameter: %w", ErrTruncated)
	}
	if n == 0 || n > MaxParamNameLen {
		return p, fmt.Errorf("config: %w: parameter name of %d bytes", ErrMalformed, n)
	}
	name, err := stringField(val[k:k+int(n)], MaxParamNameLen)
	if err != nil {
		return p, fmt.Errorf("config: parameter name: %w", err)
	}
	rest := val[k+int(n):]
	v, vk := binary.Varint(rest)
	if vk <= 0 || vk != len(rest) || vk != varintLen(v) {
		return p, fmt.Errorf("config: %w: bad parameter value", ErrMalformed)
	}
	p.Name, p.Value = name, v
	return p, nil
}

// varintLen is the length of the canonical zigzag varint encoding of v.
func varintLen(v int64) int {
	ux := uint64(v) << 1
	if v < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}
