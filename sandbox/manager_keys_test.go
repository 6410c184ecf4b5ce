package sandbox

import "testing"

// Issue 12: fields joined with "_" made different pods and containers share a key.
func TestKeysDoNotCollide(t *testing.T) {
	pods := []PodConfig{
		{Name: "a_b", Namespace: "c", UID: "u"},
		{Name: "a", Namespace: "b_c", UID: "u"},
		{Name: "a", Namespace: "b", UID: "c_u"},
		{Name: "a_b_c", Namespace: "", UID: "u"},
		{Name: "a", Namespace: "b", UID: "c", Attempt: 1},
		{Name: "a", Namespace: "b", UID: "c_1"},
		{Name: `a" "b`, Namespace: "c", UID: "u"},
		{Name: "a", Namespace: `b" "c`, UID: "u"},
	}
	seen := map[string]int{}
	for i := range pods {
		k := podKey(&pods[i])
		if j, ok := seen[k]; ok {
			t.Errorf("pods %d (%q/%q/%q) and %d share the key %s", j, pods[j].Namespace, pods[j].Name, pods[j].UID, i, k)
		}
		seen[k] = i
	}
	ctrs := []struct {
		pod string
		cfg ContainerConfig
	}{
		{"p_a", ContainerConfig{Name: "b"}},
		{"p", ContainerConfig{Name: "a_b"}},
		{"p", ContainerConfig{Name: "a_1"}},
		{"p", ContainerConfig{Name: "a", Attempt: 1}},
	}
	seenCtr := map[string]int{}
	for i, c := range ctrs {
		k := ctrKey(c.pod, &c.cfg)
		if j, ok := seenCtr[k]; ok {
			t.Errorf("containers %d (%q in %q) and %d share the key %s", j, ctrs[j].cfg.Name, ctrs[j].pod, i, k)
		}
		seenCtr[k] = i
	}
}
