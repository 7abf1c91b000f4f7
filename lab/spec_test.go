package lab

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestParseLinks(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Link
		wantErr bool
	}{
		{"empty", "", nil, false},
		{"one", "eu-us=40ms", []Link{{A: "eu", B: "us", Delay: 40 * time.Millisecond}}, false},
		{"three with spaces", "eu-us=40ms, eu-ap=120ms ,us-ap=90ms", []Link{
			{A: "eu", B: "us", Delay: 40 * time.Millisecond},
			{A: "eu", B: "ap", Delay: 120 * time.Millisecond},
			{A: "us", B: "ap", Delay: 90 * time.Millisecond},
		}, false},
		{"jitter and loss", "eu-us=40ms/5ms/0.5%", []Link{{A: "eu", B: "us", Delay: 40 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 0.005}}, false},
		{"within a region", "eu-eu=1ms", []Link{{A: "eu", B: "eu", Delay: time.Millisecond}}, false},
		{"no delay", "eu-us", nil, true},
		{"no pair", "eu=40ms", nil, true},
		{"bad duration", "eu-us=40", nil, true},
		{"negative", "eu-us=-1ms", nil, true},
		{"too long", "eu-us=2m", nil, true},
		{"loss without percent", "eu-us=1ms/0s/0.5", nil, true},
		{"loss over 100%", "eu-us=1ms/0s/150%", nil, true},
		{"four parts", "eu-us=1ms/1ms/1%/1", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseLinks(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: ParseLinks(%q) error = %v, want error %v", tt.name, tt.in, err, tt.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, ErrSpec) {
			t.Errorf("%s: error %v does not wrap ErrSpec", tt.name, err)
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: ParseLinks(%q) = %+v, want %+v", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestParseRegions(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Region
		wantErr bool
	}{
		{"three", "eu,us,ap", []Region{{"eu", 1}, {"us", 1}, {"ap", 1}}, false},
		{"hosts", "eu:3,us", []Region{{"eu", 3}, {"us", 1}}, false},
		{"empty", "", nil, true},
		{"zero hosts", "eu:0", nil, true},
		{"bad hosts", "eu:x", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseRegions(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: ParseRegions(%q) error = %v, want error %v", tt.name, tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: ParseRegions(%q) = %+v, want %+v", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	many := make([]Region, MaxRegions+1)
	for i := range many {
		many[i] = Region{Name: "r" + string(rune('a'+i%26)) + string(rune('a'+i/26))}
	}
	tests := []struct {
		name string
		spec Spec
		ok   bool
	}{
		{"minimal", Spec{Regions: []Region{{Name: "eu"}}}, true},
		{"named", Spec{Name: "demo1", Regions: []Region{{Name: "eu"}}}, true},
		{"no regions", Spec{}, false},
		{"too many regions", Spec{Regions: many}, false},
		{"name with dash", Spec{Name: "a-b", Regions: []Region{{Name: "eu"}}}, false},
		{"name too long", Spec{Name: "abcdefghijklm", Regions: []Region{{Name: "eu"}}}, false},
		{"region with dash", Spec{Regions: []Region{{Name: "eu-west"}}}, false},
		{"region starting with a digit", Spec{Regions: []Region{{Name: "1eu"}}}, false},
		{"region twice", Spec{Regions: []Region{{Name: "eu"}, {Name: "eu"}}}, false},
		{"too many hosts", Spec{Regions: []Region{{Name: "eu", Hosts: MaxHosts + 1}}}, false},
		{"link to unknown region", Spec{Regions: []Region{{Name: "eu"}}, Links: []Link{{A: "eu", B: "us"}}}, false},
		{"negative jitter", Spec{Regions: []Region{{Name: "eu"}}, Links: []Link{{A: "eu", B: "eu", Jitter: -1}}}, false},
		{"bad delayer", Spec{Regions: []Region{{Name: "eu"}}, Delayer: 7}, false},
	}
	for _, tt := range tests {
		err := tt.spec.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrSpec) {
			t.Errorf("%s: error %v does not wrap ErrSpec", tt.name, err)
		}
	}
}
