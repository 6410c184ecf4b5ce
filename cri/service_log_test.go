package cri

import (
	"context"
	"testing"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/shim"
)

// loggingRuntime answers Version with a log line through the request's
// logger and notes the request id its context carries for the shim.
type loggingRuntime struct {
	runtime.UnimplementedRuntimeServiceServer
	ids []string
}

func (l *loggingRuntime) Version(ctx context.Context, _ *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	log.G(ctx).Info("version asked")
	l.ids = append(l.ids, shim.RequestID(ctx))
	return &runtime.VersionResponse{}, nil
}

// TestRequestLogger checks that every line of a request carries its RPC
// name and id, and that the id the shim client sends is that one.
func TestRequestLogger(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.TraceLevel)
	s := New(Options{Log: logrus.NewEntry(logger)})
	rt := &loggingRuntime{}
	c := dial(t, s, rt)
	for range 2 {
		if _, err := c.Version(context.Background(), &runtime.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(rt.ids) != 2 || rt.ids[0] == "" || rt.ids[0] == rt.ids[1] {
		t.Fatalf("request ids %q, want two different ones", rt.ids)
	}
	entries := hook.AllEntries()
	if len(entries) != 4 {
		t.Fatalf("%d lines, want the handler's and the interceptor's of each request", len(entries))
	}
	for i, e := range entries {
		if want := rt.ids[i/2]; e.Data["request_id"] != want || e.Data["rpc"] != "Version" {
			t.Errorf("line %q has fields %v, want rpc Version, request_id %s", e.Message, e.Data, want)
		}
	}
	// Version is a read: its request line is at Trace.
	if e := entries[1]; e.Message != "request" || e.Level != logrus.TraceLevel {
		t.Errorf("request line %q at %s, want \"request\" at trace", e.Message, e.Level)
	}
}
