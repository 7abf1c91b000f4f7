package gossip

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		c := LocalConfig()
		c.Meta = Meta{ID: "r1"}
		c.Keys = [][]byte{testKey}
		return c
	}
	tests := []struct {
		name string
		edit func(*Config)
		want error
	}{
		{"good", func(*Config) {}, nil},
		{"plaintext", func(c *Config) { c.Keys, c.Plaintext = nil, true }, nil},
		{"no id", func(c *Config) { c.Meta.ID = "" }, ErrConfig},
		{"no key", func(c *Config) { c.Keys = nil }, ErrConfig},
		{"short key", func(c *Config) { c.Keys = [][]byte{[]byte("short")} }, ErrConfig},
		{"meta too large", func(c *Config) { c.Meta.WS = strings.Repeat("w", MaxMetaSize) }, ErrMetaTooLarge},
		{"cluster name too long", func(c *Config) { c.Cluster = strings.Repeat("c", 256) }, ErrConfig},
		{"bad bind addr", func(c *Config) { c.BindAddr = "localhost" }, ErrConfig},
		{"bad port", func(c *Config) { c.BindPort = 70000 }, ErrConfig},
		{"negative interval", func(c *Config) { c.ProbeInterval = -time.Second }, ErrConfig},
		{"negative queue", func(c *Config) { c.EventQueue = -1 }, ErrConfig},
		{"unknown profile", func(c *Config) { c.Profile = 9 }, ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.edit(&c)
			err := c.validate()
			if err == nil {
				_, err = c.memberlist()
			}
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPresets(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		probe     time.Duration
		maxBound  time.Duration
		reclaimed time.Duration
	}{
		{"local", LocalConfig(), 200 * time.Millisecond, 5 * time.Second, 2 * time.Second},
		{"lan", LANConfig(), 500 * time.Millisecond, 30 * time.Second, 30 * time.Second},
		{"bare-lan", BareLANConfig(), time.Second, 60 * time.Second, 0},
		{"wan", WANConfig(), 5 * time.Second, 200 * time.Second, 60 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Meta.ID = "r"
			mc, err := tt.cfg.memberlist()
			if err != nil {
				t.Fatal(err)
			}
			if mc.ProbeInterval != tt.probe || mc.DeadNodeReclaimTime != tt.reclaimed {
				t.Errorf("got probe %v reclaim %v, want %v %v", mc.ProbeInterval, mc.DeadNodeReclaimTime, tt.probe, tt.reclaimed)
			}
			if b, _ := tt.cfg.FailureBound(3); b <= 0 || b > tt.maxBound {
				t.Errorf("got failure bound %v, want in (0, %v]", b, tt.maxBound)
			}
		})
	}
	c := LANConfig()
	c.Meta.ID, c.ProbeInterval = "r", 300*time.Millisecond
	if mc, _ := c.memberlist(); mc.ProbeInterval != 300*time.Millisecond {
		t.Errorf("override: got probe %v, want 300ms", mc.ProbeInterval)
	}
}

func TestSettleSchedule(t *testing.T) {
	tests := []struct {
		name           string
		cfg            Config
		interval, quit time.Duration
	}{
		{"local", LocalConfig(), 100 * time.Millisecond, 500 * time.Millisecond},
		{"lan", LANConfig(), 500 * time.Millisecond, 2 * time.Second},
		{"wan", WANConfig(), 2 * time.Second, 8 * time.Second},
		{"bare-lan", BareLANConfig(), 0, 0},
		{"override", Config{Profile: ProfileLAN, SettleInterval: time.Second, SettleQuiet: 3 * time.Second}, time.Second, 3 * time.Second},
		{"off", Config{Profile: ProfileLAN, SettleInterval: -1}, 0, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.settle(); got.interval != tt.interval || got.quiet != tt.quit {
				t.Errorf("got settle every %v quiet %v, want %v %v", got.interval, got.quiet, tt.interval, tt.quit)
			}
		})
	}
}
