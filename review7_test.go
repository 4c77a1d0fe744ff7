package dbrouter

// Review 7: the Observer hook under adversarial Observers — one that reads
// the router from inside a callback, one that panics — and the order of
// what it is told against Config.OnEvent.

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// funcObserver is an Observer whose Event runs a function.
type funcObserver struct {
	NopObserver
	event func(Event)
}

func (o *funcObserver) Event(ev Event) { o.event(ev) }

// within runs f and fails the test when it has not returned after d: a
// deadlock shows as a failure naming what hung, not as the test binary's
// timeout.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v (deadlock?)", what, d)
	}
}

// TestReview7ObserverEventReadsStats: an Observer whose Event reads the
// router's levels — a Collector that scrapes Stats when the writer
// changes, a log line with WriterAddr — must not deadlock. Event used to
// run under the cluster's mutex, which Stats takes.
func TestReview7ObserverEventReadsStats(t *testing.T) {
	t.Parallel()
	c, srvs := newFakeCluster(t, 2, Settings{})
	var seen atomic.Int64
	c.observer = &funcObserver{event: func(ev Event) {
		if ev.Kind == EventWriter {
			_ = c.Stats()
			_ = c.WriterAddr()
			seen.Add(1)
		}
	}}
	srvs[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	within(t, 5*time.Second, "ExecContext with an Observer that calls Stats", func() {
		if _, err := c.ExecContext(context.Background(), "INSERT x"); err != nil {
			t.Errorf("ExecContext: %v", err)
		}
	})
	if seen.Load() != 1 {
		t.Errorf("Event saw %d writer changes, want 1", seen.Load())
	}
}

// TestReview7ObserverEventPanics: an Observer whose Event panics (a bug in
// a metrics adapter) must not wedge the cluster. Event ran under the
// cluster's mutex, released without defer: a caller that recovered the
// panic (net/http recovers a handler's) left the mutex locked, and every
// later call and Stats hung. Now the panic is logged and the call goes on.
func TestReview7ObserverEventPanics(t *testing.T) {
	t.Parallel()
	c, srvs := newFakeCluster(t, 2, Settings{})
	var logged strings.Builder
	var logMu sync.Mutex
	c.log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logged.Write(p)
	}), nil))
	var later atomic.Int64
	c.observer = &funcObserver{event: func(ev Event) {
		if ev.Kind == EventWriter && later.Add(1) == 1 {
			panic("observer bug")
		}
	}}
	srvs[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	var err error
	within(t, 5*time.Second, "ExecContext with a panicking Observer", func() {
		defer func() {
			if p := recover(); p != nil {
				err = errors.New("ExecContext panicked: " + p.(string))
			}
		}()
		_, err = c.ExecContext(context.Background(), "INSERT x")
	})
	if err != nil {
		t.Errorf("first call: %v", err)
	}
	within(t, 5*time.Second, "Stats after the Observer panicked", func() { _ = c.Stats() })
	srvs[0].set(func(s *fakeServer) { s.connectErr = nil })
	srvs[1].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	within(t, 5*time.Second, "a call after the Observer panicked", func() {
		if _, err := c.ExecContext(context.Background(), "INSERT y"); err != nil {
			t.Errorf("second call: %v", err)
		}
	})
	if later.Load() < 2 {
		t.Errorf("Event saw %d writer changes, want the second one too", later.Load())
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logged.String(), "Observer panicked") || !strings.Contains(logged.String(), "observer bug") {
		t.Errorf("the panic was not logged: %q", logged.String())
	}
}

// writerFunc is an io.Writer.
type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestReview7ObserverSeesOnEventsOrder: the Observer is told every event
// OnEvent gets, in the same order, while many callers move the writer back
// and forth concurrently (Event runs outside the lock now, so the order is
// kept by the delivery loop, not by the lock).
func TestReview7ObserverSeesOnEventsOrder(t *testing.T) {
	t.Parallel()
	var onMu sync.Mutex
	var onEvents []Event
	c, srvs := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Disabled: true}}, func(ev Event) {
		onMu.Lock()
		onEvents = append(onEvents, ev)
		onMu.Unlock()
	})
	rec := &recorder{}
	c.observer = rec
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for k := range 40 {
				bad := (g + k) % 3
				srvs[bad].set(func(s *fakeServer) { s.connectErr = errDialRefused })
				_, _ = c.ExecContext(context.Background(), "INSERT x")
				srvs[bad].set(func(s *fakeServer) { s.connectErr = nil })
			}
		})
	}
	wg.Wait()
	c.events.close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	onMu.Lock()
	defer onMu.Unlock()
	if len(onEvents) == 0 {
		t.Fatal("no events")
	}
	if len(rec.events) != len(onEvents) {
		t.Fatalf("Observer saw %d events, OnEvent %d", len(rec.events), len(onEvents))
	}
	for i := range onEvents {
		if rec.events[i] != onEvents[i] {
			t.Fatalf("event %d: Observer saw %+v, OnEvent %+v", i, rec.events[i], onEvents[i])
		}
	}
	t.Logf("%d events, the same on both sides", len(onEvents))
}
