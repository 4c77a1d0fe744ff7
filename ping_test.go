package dbrouter

import (
	"context"
	"errors"
	"testing"
)

// TestPingContextFailoverAndErrors: PingContext answers nil once a node in
// write order answers, moves past a dead writer (which becomes Suspect),
// and fails with errors matching ErrNotSent only.
func TestPingContextFailoverAndErrors(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name     string
		down     []int // servers refusing connections
		ctx      context.Context
		close    bool
		want     error // nil: success
		answered int   // the server that must have been reached, when want is nil
	}{
		{name: "writer answers", answered: 0},
		{name: "writer down: next node answers", down: []int{0}, answered: 1},
		{name: "every node down", down: []int{0, 1}, want: ErrNoNode},
		{name: "context ended", ctx: canceled, want: context.Canceled},
		{name: "cluster closed", close: true, want: ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, srv := newFakeCluster(t, 2, Settings{})
			for _, i := range tc.down {
				srv[i].set(func(s *fakeServer) { s.connectErr = errDialRefused })
			}
			if tc.close {
				c.close()
			}
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := c.PingContext(ctx)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("PingContext: %v", err)
				}
				if srv[tc.answered].connects.Load() == 0 {
					t.Errorf("server %d was not reached", tc.answered)
				}
				for _, i := range tc.down {
					if st := c.Stats().Nodes[i].State; st != StateSuspect {
						t.Errorf("node %d, which refused the ping, is %s, want suspect", i, st)
					}
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrNotSent) || errors.Is(err, ErrOutcomeUnknown) {
				t.Fatalf("err = %v, want it to match %v and ErrNotSent only", err, tc.want)
			}
			var nn *NoNodeError
			if errors.As(err, &nn) && (nn.Op != OpPing || len(nn.Attempts) != 2) {
				t.Errorf("%+v, want Op %q and 2 attempts", nn, OpPing)
			}
		})
	}
}
