package shim

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseRestartRules(t *testing.T) {
	many := `{"main":[` + strings.Repeat(`{"action":"Restart","exitCodes":{"operator":"In","values":[1]}},`, 20) +
		`{"action":"Restart","exitCodes":{"operator":"In","values":[1]}}]}`
	tests := []struct {
		name    string
		value   string
		wantErr string
	}{
		{"valid", `{"main":[{"action":"RestartAllContainers","exitCodes":{"operator":"In","values":[42]}}]}`, ""},
		{"not json", `{`, "parse restart rules"},
		{"bad action", `{"main":[{"action":"Kill","exitCodes":{"operator":"In","values":[1]}}]}`, `rules[0].action: unsupported value "Kill"`},
		{"no exit codes", `{"main":[{"action":"Restart"}]}`, "rules[0].exitCodes: required"},
		{"bad operator", `{"main":[{"action":"Restart","exitCodes":{"operator":"Gt","values":[1]}}]}`, `operator: unsupported value "Gt"`},
		{"duplicate value", `{"main":[{"action":"Restart","exitCodes":{"operator":"In","values":[1,1]}}]}`, "duplicate value 1"},
		{"too many rules", many, "21 rules: at most 20"},
		{"too many values", `{"main":[{"action":"Restart","exitCodes":{"operator":"In","values":[` + seq(256) + `]}}]}`, "256 values: at most 255"},
		{"empty name", `{"":[]}`, "empty container name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRestartRules(tt.value)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func seq(n int) string {
	vals := make([]string, n)
	for i := range vals {
		vals[i] = strconv.Itoa(i)
	}
	return strings.Join(vals, ",")
}

func TestMatchRule(t *testing.T) {
	rules := []RestartRule{
		{Action: ActionRestart, ExitCodes: &ExitCodes{Operator: "In", Values: []int32{42}}},
		{Action: ActionRestartAllContainers, ExitCodes: &ExitCodes{Operator: "NotIn", Values: []int32{0}}},
	}
	tests := []struct {
		code   int32
		action string
		ok     bool
	}{
		{42, ActionRestart, true}, // first match wins
		{3, ActionRestartAllContainers, true},
		{0, "", false},
	}
	for _, tt := range tests {
		action, ok := MatchRule(rules, tt.code)
		if action != tt.action || ok != tt.ok {
			t.Errorf("MatchRule(%d) = %q, %v; want %q, %v", tt.code, action, ok, tt.action, tt.ok)
		}
	}
}
