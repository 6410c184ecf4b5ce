package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestPrintVersion(t *testing.T) {
	var b bytes.Buffer
	printVersion(&b)
	out := b.String()
	mods := moduleVersions()
	for _, want := range []string{
		"warmpod " + version + "\n",
		"runc (libcontainer): " + mods[runcModule],
		"CRI API:             v1 (k8s.io/cri-api " + mods[criAPIModule] + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	if mods[runcModule] == "" || mods[criAPIModule] == "" {
		t.Errorf("build info lacks runc or the CRI API: %v", mods)
	}
	if libseccompVersion() != "" && !strings.Contains(out, "libseccomp:          "+libseccompVersion()+" (libseccomp-golang v") {
		t.Errorf("version output lacks libseccomp %s:\n%s", libseccompVersion(), out)
	}
}
