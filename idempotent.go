package dbrouter

import "context"

type idempotentKey struct{}

// WithIdempotent returns a context that marks the statements run with it as
// idempotent: applying one twice has the same effect as applying it once
// (INSERT ... ON DUPLICATE KEY UPDATE to fixed values, UPDATE ... SET x = 5,
// DELETE by key, an INSERT whose duplicate is refused by a unique key). Such
// a statement is retried on the next node even after an outcome-unknown
// failure, where an unmarked write returns *OutcomeUnknownError. Do not mark
// relative updates (SET n = n + 1) or inserts that a retry could duplicate.
func WithIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// isIdempotent reports whether ctx was marked by WithIdempotent.
func isIdempotent(ctx context.Context) bool {
	v, _ := ctx.Value(idempotentKey{}).(bool)
	return v
}
