package shim

import "context"

// RequestIDKey is the gRPC metadata key under which the daemon sends the
// id of the request a shim call serves (the CRI interceptor's request_id),
// so that the shim's log lines of that call carry the id the daemon's do.
// The client adds it from the context (WithRequestID); the shim puts it in
// its request's context and logger.
const RequestIDKey = "warmpod-request-id"

type requestIDKey struct{}

// WithRequestID returns a copy of ctx that carries request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// ValidRequestID tells whether id can be a request id: 1 to 64 characters
// of [0-9a-zA-Z_-]. The shim takes no other from the wire, so that what it
// logs is what the daemon sent.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
