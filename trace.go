package dbrouter

import "context"

// Trace records how the router served one call: which node answered and
// which attempts failed before it. Attach a Trace to a context with
// WithTrace; the router fills it in when the call returns. A Trace must not
// be shared by concurrent calls.
type Trace struct {
	// Node is the address of the node that answered the call (successfully
	// or with a server error), or "" when no node did.
	Node string

	// Attempts lists the failed attempts on other nodes, in order. A call
	// that succeeded with a non-empty Attempts was retried transparently.
	Attempts []*NodeError
}

type traceKey struct{}

// WithTrace returns a context that makes the router record into t how the
// call made with it was served.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

func traceOf(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

func (t *Trace) record(node string, attempts []*NodeError) {
	if t == nil {
		return
	}
	t.Node = node
	t.Attempts = attempts
}
