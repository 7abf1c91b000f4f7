package controlserver

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes: every path and method openapi.json documents
// is routed to the pattern of the same shape, and every routed pattern is
// documented.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	srv, err := New(Config{Store: testStore(t), Secret: testSecret, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	var documented []string
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			var op struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil || len(op.Responses) == 0 {
				t.Errorf("%s %s: no responses documented", method, path)
			}
			pattern := strings.ToUpper(method) + " " + path
			documented = append(documented, pattern)
			// A concrete request of the documented shape must reach
			// exactly this pattern.
			req := httptest.NewRequest(strings.ToUpper(method), param.ReplaceAllString(path, "x1"), nil)
			if _, got := srv.mux.Handler(req); got != pattern {
				t.Errorf("documented %s is routed to %q", pattern, got)
			}
		}
	}
	for _, r := range srv.routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	if len(documented) != len(srv.routes) {
		t.Errorf("%d documented operations, %d routes", len(documented), len(srv.routes))
	}
}

func TestConfigValidation(t *testing.T) {
	st := testStore(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{Secret: testSecret}},
		{"short secret", Config{Store: st, Secret: []byte("short")}},
		{"short operator token", Config{Store: st, Secret: testSecret, OperatorToken: "abc"}},
		{"heartbeat not below liveness", Config{Store: st, Secret: testSecret, RelayLiveness: 10e9, HeartbeatInterval: 10e9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New() error = %v, want ErrInvalidConfig", err)
			}
		})
	}
}
