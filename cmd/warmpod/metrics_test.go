package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/warmpod/warmpod/runtime/metrics"
)

func TestServeMetrics(t *testing.T) {
	logger, _ := logtest.NewNullLogger()
	stop, addr, err := serveMetrics("127.0.0.1:0", logrus.NewEntry(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	metrics.CRIRequest("RunPodSandbox", "OK", 30*time.Millisecond)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	for _, want := range []string{
		`warmpod_cri_requests_total{code="OK",method="RunPodSandbox"}`,
		`warmpod_cri_request_duration_seconds_bucket{method="RunPodSandbox",le=`,
		"go_goroutines",
		"warmpod_process_resident_memory_bytes",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if _, _, err := serveMetrics(addr, logrus.NewEntry(logger)); err == nil {
		t.Errorf("a second server on %s started", addr)
	}
}
