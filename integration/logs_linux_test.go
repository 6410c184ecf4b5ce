package integration

import (
	"regexp"
	"strings"
	"testing"
)

var requestIDField = regexp.MustCompile(`\brequest_id=([0-9a-zA-Z_-]+)`)

// TestRequestIDInShimLog checks that one request's log lines carry the same
// request id in the daemon's log and in the pod shim's: the daemon sends
// its id along with every call it makes to the shim for the request.
func TestRequestIDInShimLog(t *testing.T) {
	begin(t)
	mark := d.LogSize()
	cfg := newPodConfig("request-id")
	podID := runPod(t, cfg)
	cid := createContainer(t, podID, cfg, newContainerConfig("main", "sleep", "3600"))

	// The daemon's line for the container: the CreateContainer request's.
	var id string
	for _, line := range strings.Split(d.LogSince(mark), "\n") {
		if strings.Contains(line, "container="+cid) && strings.Contains(line, "rpc=CreateContainer") {
			if m := requestIDField.FindStringSubmatch(line); m != nil {
				id = m[1]
				break
			}
		}
	}
	if id == "" {
		t.Fatalf("no daemon log line of container %s carries rpc=CreateContainer and a request_id", short(cid))
	}
	for _, line := range strings.Split(d.LogSince(mark), "\n") {
		if strings.Contains(line, "request_id="+id) && !strings.Contains(line, "rpc=CreateContainer") {
			t.Errorf("daemon line of request %s without its rpc: %s", id, line)
		}
	}

	var shimLines []string
	for _, line := range strings.Split(d.shimLog(podID), "\n") {
		if strings.Contains(line, "request_id="+id) {
			shimLines = append(shimLines, line)
		}
	}
	if len(shimLines) == 0 {
		t.Fatalf("no line of pod %s's shim log carries request_id=%s:\n%s", short(podID), id, d.shimLog(podID))
	}
	for _, line := range shimLines {
		// The shim names its own RPC, which for this request is its
		// CreateContainer.
		if !strings.Contains(line, "rpc=CreateContainer") || !strings.Contains(line, "pod="+podID) {
			t.Errorf("shim line of request %s without rpc=CreateContainer and the pod: %s", id, line)
		}
	}
}
