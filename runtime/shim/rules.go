package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Restart rule actions, as in Kubernetes' ContainerRestartRule.
const (
	ActionRestart              = "Restart"
	ActionRestartAllContainers = "RestartAllContainers"
)

// Limits the Kubernetes API enforces on restart rules.
const (
	maxRestartRules    = 20
	maxExitCodesValues = 255
)

// RestartRule is Kubernetes' ContainerRestartRule: when a container exits
// with a code the rule matches, Action is taken. The first matching rule of
// a container wins.
type RestartRule struct {
	Action    string     `json:"action"`
	ExitCodes *ExitCodes `json:"exitCodes"`
}

// ExitCodes is Kubernetes' ContainerRestartRuleOnExitCodes.
type ExitCodes struct {
	Operator string  `json:"operator"` // In | NotIn
	Values   []int32 `json:"values"`
}

// ParseRestartRules decodes and validates the value of the pod annotation
// that carries restart rules: a JSON object from container name to that
// container's restartPolicyRules list.
func ParseRestartRules(value string) (map[string][]RestartRule, error) {
	var rules map[string][]RestartRule
	if err := json.Unmarshal([]byte(value), &rules); err != nil {
		return nil, fmt.Errorf("parse restart rules: %w", err)
	}
	for name, list := range rules {
		if name == "" {
			return nil, errors.New("restart rules: empty container name")
		}
		if err := ValidateRestartRules(list); err != nil {
			return nil, fmt.Errorf("restart rules of container %q: %w", name, err)
		}
	}
	return rules, nil
}

// ValidateRestartRules checks rules the way the Kubernetes API server does.
func ValidateRestartRules(rules []RestartRule) error {
	if len(rules) > maxRestartRules {
		return fmt.Errorf("%d rules: at most %d are allowed", len(rules), maxRestartRules)
	}
	for i, r := range rules {
		if r.Action != ActionRestart && r.Action != ActionRestartAllContainers {
			return fmt.Errorf("rules[%d].action: unsupported value %q: supported values are %q and %q",
				i, r.Action, ActionRestart, ActionRestartAllContainers)
		}
		if r.ExitCodes == nil {
			return fmt.Errorf("rules[%d].exitCodes: required", i)
		}
		if op := r.ExitCodes.Operator; op != "In" && op != "NotIn" {
			return fmt.Errorf("rules[%d].exitCodes.operator: unsupported value %q: supported values are \"In\" and \"NotIn\"", i, op)
		}
		if n := len(r.ExitCodes.Values); n > maxExitCodesValues {
			return fmt.Errorf("rules[%d].exitCodes.values: %d values: at most %d are allowed", i, n, maxExitCodesValues)
		}
		seen := make(map[int32]bool, len(r.ExitCodes.Values))
		for j, v := range r.ExitCodes.Values {
			if seen[v] {
				return fmt.Errorf("rules[%d].exitCodes.values[%d]: duplicate value %d", i, j, v)
			}
			seen[v] = true
		}
	}
	return nil
}

// MatchRule returns the action of the first rule matching exit code code.
func MatchRule(rules []RestartRule, code int32) (string, bool) {
	for _, r := range rules {
		if slices.Contains(r.ExitCodes.Values, code) == (r.ExitCodes.Operator == "In") {
			return r.Action, true
		}
	}
	return "", false
}
