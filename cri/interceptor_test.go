package cri

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warmpod/warmpod/runtime/metrics"
)

func TestUnaryInterceptorLogsAndCounts(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.InfoLevel)
	s := New(Options{Log: logrus.NewEntry(logger)})
	call := func(method string, err error) error {
		_, got := s.UnaryInterceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/" + method},
			func(ctx context.Context, _ any) (any, error) { return nil, err })
		return got
	}
	count := func(method, code string) float64 {
		return metrics.CRIRequestCount(method, code)
	}
	before := count("StartContainer", "FailedPrecondition")
	beforeOK := count("Version", "OK")

	err := call("StartContainer", errdefs.ErrFailedPrecondition.WithMessage("container c1 is running"))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("code %s, want FailedPrecondition", status.Code(err))
	}
	if got := count("StartContainer", "FailedPrecondition") - before; got != 1 {
		t.Errorf("requests counted: %v, want 1", got)
	}
	e := hook.LastEntry()
	if e == nil || e.Level != logrus.WarnLevel || e.Data["rpc"] != "StartContainer" || e.Data["request_id"] == "" ||
		!strings.Contains(e.Data[logrus.ErrorKey].(error).Error(), "container c1 is running") {
		t.Fatalf("log entry %+v, want a warning with the rpc, request id and error", e)
	}

	// Successes, a client giving up and a read of something gone are no
	// warnings.
	hook.Reset()
	_ = call("Version", nil)
	_ = call("ContainerStatus", errdefs.ErrNotFound)
	_ = call("RemovePodSandbox", context.Canceled)
	if entries := hook.AllEntries(); len(entries) != 0 {
		t.Errorf("logged %d entries at Info or above: %+v", len(entries), entries[0])
	}
	if got := count("Version", "OK") - beforeOK; got != 1 {
		t.Errorf("Version requests counted: %v, want 1", got)
	}
	// A missing object a mutating call needed is a warning.
	_ = call("StartContainer", errors.Join(errdefs.ErrNotFound))
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel {
		t.Errorf("NotFound from StartContainer: %+v, want a warning", e)
	}
}
