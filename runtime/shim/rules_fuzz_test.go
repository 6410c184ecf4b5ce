package shim

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzParseRestartRules parses the restart-rules annotation, which any pod author writes: parsing never
// panics, what it accepts keeps the API server's limits and matches any exit code without panicking, and
// accepted rules survive a round trip through JSON.
func FuzzParseRestartRules(f *testing.F) {
	f.Add(`{"worker":[{"action":"RestartAllContainers","exitCodes":{"operator":"In","values":[42]}}]}`)
	f.Add(`{"a":[{"action":"Restart","exitCodes":{"operator":"NotIn","values":[0,1,2]}}],"b":[]}`)
	f.Add(`{"a":[{"action":"Restart"}]}`)
	f.Add(`{"":[]}`)
	f.Add(`{"a":[{"action":"Restart","exitCodes":{"operator":"In","values":[1,1]}}]}`)
	f.Add(`{"a":null,"b":[{"action":"RestartAllContainers","exitCodes":{"operator":"In","values":[-1,2147483647]}}]}`)
	f.Fuzz(func(t *testing.T, value string) {
		rules, err := ParseRestartRules(value)
		if err != nil {
			return
		}
		for name, list := range rules {
			if name == "" {
				t.Fatal("empty container name accepted")
			}
			if err := ValidateRestartRules(list); err != nil {
				t.Fatalf("accepted rules of %q do not validate: %v", name, err)
			}
			if len(list) > maxRestartRules {
				t.Fatalf("%d rules accepted", len(list))
			}
			for _, code := range []int32{0, 1, 42, 137, -1, 1 << 30} {
				if action, ok := MatchRule(list, code); ok && action != ActionRestart && action != ActionRestartAllContainers {
					t.Fatalf("matched unknown action %q", action)
				}
			}
		}
		data, err := json.Marshal(rules)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseRestartRules(string(data))
		if err != nil {
			t.Fatalf("accepted rules do not parse again: %v\n%s", err, data)
		}
		if !reflect.DeepEqual(normal(rules), normal(again)) {
			t.Fatalf("round trip changed the rules: %v -> %v", rules, again)
		}
	})
}

// normal treats a null and an empty list the same.
func normal(m map[string][]RestartRule) map[string][]RestartRule {
	out := map[string][]RestartRule{}
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}
