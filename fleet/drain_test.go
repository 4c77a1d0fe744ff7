package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
)

// drainSink is a fakeSink that follows decisions (its view's writer becomes
// the decided node) and can be drained as a router's cluster can
// (dbrouter.NodeDrainer): not its writer.
type drainSink struct{ *fakeSink }

func (s drainSink) Decide(d dbrouter.WriterDecision) error {
	if err := s.fakeSink.Decide(d); err != nil {
		return err
	}
	s.mu.Lock()
	s.stats.Writer = d.Writer
	s.mu.Unlock()
	return nil
}

func (s drainSink) SetDrained(addr string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on && s.stats.Writer == addr {
		return fmt.Errorf("%s is the writer", addr)
	}
	for i := range s.stats.Nodes {
		if s.stats.Nodes[i].Addr == addr {
			s.stats.Nodes[i].Drained = on
			return nil
		}
	}
	return fmt.Errorf("no node %s", addr)
}

// drained reports whether the sink's view shows addr drained.
func (s drainSink) drained(addr string) bool {
	for _, n := range s.Stats().Nodes {
		if n.Addr == addr {
			return n.Drained
		}
	}
	return false
}

// TestFleetDrain: a drain key moves the fleet's writer off the node (a
// decision, without demoting it), every router drains it locally once it
// is no longer its writer, a switchover to it is refused, draining the last
// node that could write is refused, and Undrain puts it back in service
// everywhere without moving the writer.
func TestFleetDrain(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pfx = "/drain/"
	var sinks []drainSink
	for _, id := range []string{"r1", "r2", "r3"} {
		c, err := New(cli, Options{Prefix: pfx, RouterID: id, LeaseTTL: testTTL, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		c.viewPoll = 20 * time.Millisecond
		s := drainSink{&fakeSink{}}
		s.set("", up(n0, "0-1-5"), up(n1, "0-1-5"), up(n2, "0-1-5"))
		stop := c.Watch("c", testNodes, s)
		t.Cleanup(func() {
			stop()
			c.Close()
		})
		sinks = append(sinks, s)
	}
	eventually(t, "the first decision, n0, applied by every router", func() bool {
		for _, s := range sinks {
			if d, ok := s.last(); !ok || d.Writer != n0 {
				return false
			}
		}
		return true
	})

	if err := Drain(ctx, cli, pfx, "c", n0, "ops@test"); err != nil {
		t.Fatal(err)
	}
	st, err := WaitDrained(ctx, cli, pfx, "c", n0)
	if err != nil {
		t.Fatalf("WaitDrained: %v (state %+v)", err, st)
	}
	d, _ := decision(t, cli, pfx)
	if d.Writer != n1 || !strings.Contains(d.Cause, n0+" is drained") || strings.Contains(d.Cause, "read-only") {
		t.Errorf("decision after draining n0: %+v", d)
	}
	for i, s := range sinks {
		if !s.drained(n0) || s.Stats().Writer != n1 {
			t.Errorf("router %d: n0 drained %v, writer %s", i+1, s.drained(n0), s.Stats().Writer)
		}
	}
	if err := Drain(ctx, cli, pfx, "c", n0, "ops@test"); err != nil {
		t.Errorf("draining a drained node again: %v", err)
	}
	if _, err := Switchover(ctx, cli, pfx, "c", n0, "ops@test"); !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), "drained") {
		t.Errorf("switchover to the drained n0: %v", err)
	}
	if err := Drain(ctx, cli, pfx, "c", "zz:3306", "ops@test"); !errors.Is(err, ErrDrainRefused) {
		t.Errorf("drain of an unknown node: %v", err)
	}

	if err := Drain(ctx, cli, pfx, "c", n1, "ops@test"); err != nil {
		t.Fatal(err)
	}
	if _, err := WaitDrained(ctx, cli, pfx, "c", n1); err != nil {
		t.Fatal(err)
	}
	if d, _ := decision(t, cli, pfx); d.Writer != n2 {
		t.Errorf("writer %s after draining n0 and n1, want n2", d.Writer)
	}
	if err := Drain(ctx, cli, pfx, "c", n2, "ops@test"); !errors.Is(err, ErrDrainRefused) || !strings.Contains(err.Error(), "no other node") {
		t.Errorf("draining the last writable node: %v", err)
	}

	if was, err := Undrain(ctx, cli, pfx, "c", n0); err != nil || !was {
		t.Fatalf("Undrain: %v, %v", was, err)
	}
	eventually(t, "n0 undrained by every router", func() bool {
		for _, s := range sinks {
			if s.drained(n0) {
				return false
			}
		}
		return true
	})
	if was, _ := Undrain(ctx, cli, pfx, "c", n0); was {
		t.Error("Undrain of an undrained node reported it drained")
	}
	time.Sleep(100 * time.Millisecond) // several view polls: a decision would have come
	if d, _ := decision(t, cli, pfx); d.Writer != n2 {
		t.Errorf("writer %s after the undrain, want n2 (it stays)", d.Writer)
	}
}
