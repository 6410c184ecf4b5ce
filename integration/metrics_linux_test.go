package integration

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

var metricsAddrRE = regexp.MustCompile(`msg="serving metrics at /metrics" address="?([0-9.]+:[0-9]+)`)

// metricsURL is where the run's daemon serves its metrics (it listens on a
// free port and logs which).
func metricsURL(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	m := metricsAddrRE.FindAllStringSubmatch(string(data), -1)
	if len(m) == 0 {
		t.Fatalf("the daemon's log does not say where it serves metrics")
	}
	return "http://" + m[len(m)-1][1] + "/metrics"
}

// scrape GETs the daemon's metrics, as curl would, and returns each sample
// by its name and labels as written ("warmpod_shims",
// `warmpod_pod_resets_total{trigger="reset_pod"}`).
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	// No connection is kept open: the daemon's descriptors are counted by
	// the leak checks.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(metricsURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsAfterReset resets a pod with ResetPod and with the kubelet's
// sequence and reads the resets, their durations, the warm creates and the
// shims from the metrics endpoint.
func TestMetricsAfterReset(t *testing.T) {
	ctx := begin(t)
	before := scrape(t)
	p := newResetPod(t, "metrics-reset", nil)
	p.waitWarm(t)
	if _, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id}); err != nil {
		t.Fatalf("ResetPod: %v", err)
	}
	p.waitWarm(t)
	for _, id := range p.ids {
		if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
	}
	for _, c := range p.configs {
		c.Metadata.Attempt++
		c.LogPath = c.Metadata.Name + "-1.log"
	}
	p.startAll(t)

	after := scrape(t)
	grew := func(sample string, by float64) {
		t.Helper()
		if got := after[sample] - before[sample]; got < by {
			t.Errorf("%s went from %v to %v, want it up by at least %v", sample, before[sample], after[sample], by)
		}
	}
	grew(`warmpod_pod_resets_total{trigger="reset_pod"}`, 1)
	grew(`warmpod_pod_reset_duration_seconds_count{trigger="reset_pod"}`, 1)
	grew(`warmpod_pod_reset_api_duration_seconds_count`, 1)
	grew(`warmpod_pod_resets_total{trigger="kubelet"}`, 1)
	grew(`warmpod_pod_reset_duration_seconds_count{trigger="kubelet"}`, 1)
	// The reset takes init, sidecar and main warm, and the kubelet's creates
	// do too.
	grew(`warmpod_container_creates_total{kind="warm"}`, 6)
	grew(`warmpod_cri_requests_total{code="OK",method="ResetPod"}`, 1)
	if after["warmpod_shims"] < 1 || after[`warmpod_shim_memory_bytes{kind="pss"}`] <= 0 {
		t.Errorf("shims %v using %v bytes (PSS), want at least this pod's", after["warmpod_shims"], after[`warmpod_shim_memory_bytes{kind="pss"}`])
	}
	if _, ok := after["warmpod_precreate_backlog"]; !ok {
		t.Error("no warmpod_precreate_backlog")
	}
	if after["warmpod_precreate_duration_seconds_count"] <= before["warmpod_precreate_duration_seconds_count"] {
		t.Error("no pre-creation counted")
	}
	t.Logf("reset_pod: %v resets, %.2f ms in the shim on average; kubelet: %v resets, %.2f ms",
		after[`warmpod_pod_resets_total{trigger="reset_pod"}`],
		1000*after[`warmpod_pod_reset_duration_seconds_sum{trigger="reset_pod"}`]/after[`warmpod_pod_reset_duration_seconds_count{trigger="reset_pod"}`],
		after[`warmpod_pod_resets_total{trigger="kubelet"}`],
		1000*after[`warmpod_pod_reset_duration_seconds_sum{trigger="kubelet"}`]/after[`warmpod_pod_reset_duration_seconds_count{trigger="kubelet"}`])
}
