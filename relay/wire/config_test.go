package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

// param encodes one config parameter field (tag 2) with a raw value.
func param(name string, value []byte) []byte {
	v := append(uvarint(uint64(len(name))), name...)
	return field(2, append(v, value...)...)
}

// zigzag returns the canonical zigzag varint of v.
func zigzag(v int64) []byte {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarint(u)
}

func base(v uint64) []byte { return field(1, uvarint(v)...) }

func TestConfigRoundTrip(t *testing.T) {
	many := make([]wire.Param, wire.MaxParams)
	for i := range many {
		many[i] = wire.Param{Name: fmt.Sprintf("p%03d", i), Value: int64(i - 128)}
	}
	tests := []struct {
		name string
		c    wire.Config
	}{
		{"base 0, no params", wire.Config{}},
		{"base only", wire.Config{BaseVersion: 17}},
		{"largest base", wire.Config{BaseVersion: 1<<63 - 1}},
		{"example", exampleConfig},
		{"negative values", wire.Config{BaseVersion: 1, Params: []wire.Param{{"a", -1}, {"b", -64}, {"c", -65}, {"d", -1200}}}},
		{"int64 extremes", wire.Config{BaseVersion: 2, Params: []wire.Param{{"min", math.MinInt64}, {"max", math.MaxInt64}, {"zero", 0}}}},
		{"MaxParams params", wire.Config{BaseVersion: 3, Params: many}},
		{"longest name", wire.Config{BaseVersion: 4, Params: []wire.Param{{strings.Repeat("n", wire.MaxParamNameLen), 1}}}},
		{"UTF-8 name", wire.Config{BaseVersion: 5, Params: []wire.Param{{"gain.ü", 1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := wire.AppendConfig([]byte("x"), &tt.c)
			if b[0] != 'x' {
				t.Fatalf("AppendConfig overwrote dst")
			}
			got, err := wire.DecodeConfig(b[1:])
			if err != nil {
				t.Fatalf("DecodeConfig(AppendConfig(c)): %v", err)
			}
			if !configsEqual(&got, &tt.c) {
				t.Errorf("round trip:\ngot  %+v\nwant %+v", got, tt.c)
			}
		})
	}
}

func configsEqual(a, b *wire.Config) bool {
	return a.BaseVersion == b.BaseVersion && len(a.Params) == len(b.Params) &&
		(len(a.Params) == 0 || reflect.DeepEqual(a.Params, b.Params))
}

func TestConfigEncoding(t *testing.T) {
	tests := []struct {
		name string
		c    wire.Config
		want []byte
	}{
		{"base 0 is always present", wire.Config{}, []byte{0x01, 0x01, 0x00}},
		{"one param", wire.Config{BaseVersion: 300, Params: []wire.Param{{"g", -3}}},
			[]byte{0x01, 0x02, 0xac, 0x02, 0x02, 0x03, 0x01, 'g', 0x05}},
		{"value 64 takes two bytes", wire.Config{BaseVersion: 1, Params: []wire.Param{{"g", 64}}},
			[]byte{0x01, 0x01, 0x01, 0x02, 0x04, 0x01, 'g', 0x80, 0x01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wire.AppendConfig(nil, &tt.c); !bytes.Equal(got, tt.want) {
				t.Errorf("AppendConfig = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestDecodeConfigErrors(t *testing.T) {
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tooMany := [][]byte{base(1)}
	for i := range wire.MaxParams + 1 {
		tooMany = append(tooMany, param(fmt.Sprintf("p%d", i), zigzag(1)))
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, wire.ErrMalformed},
		{"missing base version", param("g", zigzag(1)), wire.ErrMalformed},
		{"duplicate base version", join(base(1), base(1)), wire.ErrMalformed},
		{"base version non-canonical", field(1, 0x81, 0x00), wire.ErrMalformed},
		{"base version empty", field(1), wire.ErrMalformed},
		{"base version 2^63", field(1, uvarint(1<<63)...), wire.ErrMalformed},
		{"duplicate params", join(base(1), param("g", zigzag(1)), param("g", zigzag(2))), wire.ErrMalformed},
		{"more than MaxParams", join(tooMany...), wire.ErrMalformed},
		{"empty name", join(base(1), param("", zigzag(1))), wire.ErrMalformed},
		{"name too long", join(base(1), param(strings.Repeat("n", wire.MaxParamNameLen+1), zigzag(1))), wire.ErrMalformed},
		{"name not UTF-8", join(base(1), param("g\xff", zigzag(1))), wire.ErrMalformed},
		{"value missing", join(base(1), param("g", nil)), wire.ErrMalformed},
		{"value unfinished", join(base(1), param("g", []byte{0x80})), wire.ErrMalformed},
		{"value trailing byte", join(base(1), param("g", []byte{0x02, 0x00})), wire.ErrMalformed},
		{"value non-canonical", join(base(1), param("g", []byte{0x80, 0x00})), wire.ErrMalformed},
		{"value over 64 bits", join(base(1), param("g", bytes.Repeat([]byte{0xff}, 11))), wire.ErrMalformed},
		{"name length beyond param", join(base(1), field(2, 9, 'g')), wire.ErrTruncated},
		{"name length unfinished", join(base(1), field(2, 0x80)), wire.ErrTruncated},
		{"name length non-canonical", join(base(1), field(2, 0x81, 0x00, 'g', 0x02)), wire.ErrMalformed},
		{"param empty", join(base(1), field(2)), wire.ErrTruncated},
		{"field truncated", join(base(1), []byte{2, 10, 1}), wire.ErrTruncated},
		{"tag without length", join(base(1), []byte{2}), wire.ErrTruncated},
		{"field length non-canonical", []byte{1, 0x81, 0x00, 0x01}, wire.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wire.DecodeConfig(tt.in)
			if !errors.Is(err, tt.want) {
				t.Errorf("DecodeConfig(%x) = %v, want %v", tt.in[:min(len(tt.in), 32)], err, tt.want)
			}
		})
	}
}

func TestDecodeConfigUnknownTagSkipped(t *testing.T) {
	in := bytes.Join([][]byte{field(9, 0xff, 0xff), base(4), field(3), param("g", zigzag(-2)), field(9, 1)}, nil)
	got, err := wire.DecodeConfig(in)
	want := wire.Config{BaseVersion: 4, Params: []wire.Param{{"g", -2}}}
	if err != nil || !configsEqual(&got, &want) {
		t.Errorf("DecodeConfig(%x) = %+v, %v; want %+v", in, got, err, want)
	}
}

func TestDecodeConfigErrorsCarryNoValues(t *testing.T) {
	const secret = "Jane-Doe-1961"
	for _, in := range [][]byte{
		bytes.Join([][]byte{base(1), param(secret, zigzag(1)), param(secret, zigzag(1))}, nil),
		bytes.Join([][]byte{base(1), param(strings.Repeat(secret, 10), zigzag(1))}, nil),
		bytes.Join([][]byte{base(1), param(secret+"\xff", zigzag(1))}, nil),
	} {
		_, err := wire.DecodeConfig(in)
		if err == nil || strings.Contains(err.Error(), "Jane") {
			t.Errorf("DecodeConfig error %v: want an error without the parameter name", err)
		}
	}
}
