package dbrouter

// Review 7: the Observer hook under adversarial Observers — one that reads
// the router from inside a callback, one that panics — and the order of
// what it is told against Config.OnEvent.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
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

// TestReview7WhichCallsAreReported pins down which calls reach
// Observer.CallDone, as docs/observability.md lists them: the calls of a
// Cluster are, one each; what runs on a connection the caller holds (a
// Tx's statements and COMMIT, a Conn's statements, the *sql.DB of
// Cluster.Writer) is not.
func TestReview7WhichCallsAreReported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T, c *Cluster) error
		want []Op
	}{
		{"ExecContext", func(t *testing.T, c *Cluster) error { _, err := c.ExecContext(ctx, "INSERT x"); return err }, []Op{OpExec}},
		{"QueryContext", func(t *testing.T, c *Cluster) error {
			rows, err := c.QueryContext(ctx, "SELECT 1")
			if err == nil {
				rows.Close()
			}
			return err
		}, []Op{OpQuery}},
		{"QueryRowContext", func(t *testing.T, c *Cluster) error { var v any; return c.QueryRowContext(ctx, "SELECT 1").Scan(&v) }, []Op{OpQuery}},
		{"PingContext", func(t *testing.T, c *Cluster) error { return c.PingContext(ctx) }, []Op{OpPing}},
		{"BeginTx and its statements", func(t *testing.T, c *Cluster) error {
			tx, err := c.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT x"); err != nil {
				return err
			}
			return tx.Commit()
		}, []Op{OpBegin}},
		{"RunInTx", func(t *testing.T, c *Cluster) error {
			return c.RunInTx(ctx, nil, func(ctx context.Context, tx *Tx) error { _, err := tx.ExecContext(ctx, "INSERT x"); return err })
		}, []Op{OpBegin}},
		{"Conn and its statements", func(t *testing.T, c *Cluster) error {
			conn, err := c.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = conn.ExecContext(ctx, "INSERT x")
			return err
		}, []Op{OpConn}},
		{"Writer", func(t *testing.T, c *Cluster) error { _, err := c.Writer().ExecContext(ctx, "INSERT x"); return err }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _, rec := newObservedCluster(t, 2)
			if err := tc.run(t, c); err != nil {
				t.Fatal(err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			var got []Op
			for _, ci := range rec.calls {
				got = append(got, ci.Op)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("CallDone saw %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReview7OutcomeOfNoNodeUnknown: OutcomeOf's label and errors.Is on
// the same error, for each way a call can end. They agree, but for one
// documented case: a read (or a write marked WithIdempotent) that lost its
// connection on every node returns a *NoNodeError that matches
// ErrOutcomeUnknown; its label is no_node, since OutcomeOf tests
// *NoNodeError first. Such a call was declared safe to run again, so the
// label "no node" is what an operator needs; the caller still sees
// ErrOutcomeUnknown.
func TestReview7OutcomeOfNoNodeUnknown(t *testing.T) {
	t.Parallel()
	c, srvs, rec := newObservedCluster(t, 2)
	for _, s := range srvs {
		s.set(func(s *fakeServer) { s.execErr = mysql.ErrInvalidConn })
	}
	var v any
	err := c.QueryRowContext(context.Background(), "SELECT 1").Scan(&v)
	ci := rec.lastCall(t)
	var nn *NoNodeError
	if !errors.As(err, &nn) || !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrNotSent) {
		t.Fatalf("err %v: want a *NoNodeError matching ErrOutcomeUnknown only", err)
	}
	if ci.Outcome != OutcomeNoNode || OutcomeOf(err) != OutcomeNoNode || len(ci.Attempts) != 2 {
		t.Errorf("CallDone outcome %q attempts %d, want no_node after 2", ci.Outcome, len(ci.Attempts))
	}
	// Every other outcome agrees with errors.Is.
	for _, e := range []error{
		&OutcomeUnknownError{Cluster: "fake", Node: "a:3306", Op: OpExec, Err: mysql.ErrInvalidConn},
		&notSentError{cluster: "fake", op: OpExec, err: context.Canceled},
		&NoNodeError{Cluster: "fake", Op: OpExec, Attempts: []*NodeError{{Node: "a:3306", Class: ClassNotSent, Err: errDialRefused}}},
	} {
		o := OutcomeOf(e)
		if o == OutcomeUnknown && !errors.Is(e, ErrOutcomeUnknown) || o == OutcomeNotSent && !errors.Is(e, ErrNotSent) ||
			o == OutcomeNoNode && !errors.Is(e, ErrNoNode) {
			t.Errorf("OutcomeOf(%v) = %q disagrees with errors.Is", e, o)
		}
	}
}

// TestReview7BlockedEventDoesNotWedge: an Observer whose Event blocks (a
// metrics backend that is down) holds up the goroutine that delivers the
// events, but not the cluster: other calls, and Stats, go on, and the
// events that come meanwhile are delivered, in order, once Event returns.
// Event used to run under the cluster's mutex: every call that reported
// a failure, and Stats, waited for it.
func TestReview7BlockedEventDoesNotWedge(t *testing.T) {
	t.Parallel()
	c, srvs := newFakeCluster(t, 3, Settings{})
	release := make(chan struct{})
	var blocked atomic.Bool
	var mu sync.Mutex
	var writers []string
	c.observer = &funcObserver{event: func(ev Event) {
		if ev.Kind != EventWriter {
			return
		}
		if blocked.CompareAndSwap(false, true) {
			<-release
		}
		mu.Lock()
		writers = append(writers, ev.To)
		mu.Unlock()
	}}
	srvs[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	first := make(chan error, 1)
	go func() { _, err := c.ExecContext(context.Background(), "INSERT x"); first <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for !blocked.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Event was not called")
		}
		time.Sleep(time.Millisecond)
	}
	srvs[1].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	within(t, 5*time.Second, "a call and Stats while Event blocks", func() {
		if _, err := c.ExecContext(context.Background(), "INSERT y"); err != nil {
			t.Errorf("second call: %v", err)
		}
		_ = c.Stats()
	})
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first call: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(writers, []string{"b:3306", "c:3306"}) {
		t.Errorf("writer events %v, want [b:3306 c:3306]", writers)
	}
}

// TestReview7WriterEventsChain: through a first choice, a switchover, a
// drain of the writer, an undrain and a switchover back, the writer
// events the Observer gets form a chain — each From is the previous To,
// and no event has From == To — so a counter of them counts each change
// once: none twice, none missed. With probes off, the first writer is
// taken without an event (documented in docs/observability.md).
func TestReview7WriterEventsChain(t *testing.T) {
	t.Parallel()
	c, _ := newFakeClusterWithProbes(t, 3, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}, nil)
	rec := &recorder{}
	c.observer = rec
	ctx := testCtx(t)
	steps := []struct {
		name string
		run  func() error
	}{
		{"first call", func() error { _, err := c.ExecContext(ctx, "INSERT x"); return err }},
		{"Switchover(b)", func() error { return c.Switchover(ctx, "b", nil) }},
		{"Drain(b)", func() error { return c.Drain(ctx, "b:3306", nil) }},
		{"Undrain(b)", func() error { return c.Undrain("b:3306") }},
		{"Switchover(b) again", func() error { return c.Switchover(ctx, "b", nil) }},
		{"Switchover('')", func() error { return c.Switchover(ctx, "", nil) }},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	prev := ""
	n := 0
	for _, ev := range rec.events {
		if ev.Kind != EventWriter {
			continue
		}
		n++
		t.Logf("writer %q -> %q (%s)", ev.From, ev.To, ev.Cause)
		if ev.From != prev || ev.From == ev.To {
			t.Errorf("writer event %q -> %q after the writer was %q", ev.From, ev.To, prev)
		}
		prev = ev.To
	}
	if n < 4 || prev != c.WriterAddr() {
		t.Errorf("%d writer events ending at %q, writer %q", n, prev, c.WriterAddr())
	}

	off, _ := newFakeCluster(t, 2, Settings{})
	recOff := &recorder{}
	off.observer = recOff
	if _, err := off.ExecContext(ctx, "INSERT x"); err != nil {
		t.Fatal(err)
	}
	recOff.mu.Lock()
	defer recOff.mu.Unlock()
	if len(recOff.events) != 0 {
		t.Errorf("with probes off, events %v; the docs say the first writer is taken without one", recOff.events)
	}
}

// TestReview7ContextEndsAfterRetry: a write refused by node a, retried on
// node b, whose connect outlasts the caller's deadline, ends not_sent with
// no answering node and one failed attempt — which was retried (on b).
// CallInfo.Attempts lists it; an adapter counting retries must count it
// (prometheus' Collector counted only attempts before the last when no
// node answered; see TestRetriesOfContextEndedCall there).
func TestReview7ContextEndsAfterRetry(t *testing.T) {
	t.Parallel()
	c, srvs, rec := newObservedCluster(t, 2)
	srvs[0].set(func(s *fakeServer) { s.connectErr = errDialRefused })
	srvs[1].set(func(s *fakeServer) {
		s.connectFn = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.ExecContext(ctx, "INSERT x")
	ci := rec.lastCall(t)
	if !errors.Is(err, ErrNotSent) || ci.Outcome != OutcomeNotSent || ci.Node != "" ||
		len(ci.Attempts) != 1 || ci.Attempts[0].Node != "a:3306" {
		t.Fatalf("err %v; CallInfo outcome %q node %q attempts %v; want not_sent, no node, the attempt on a", err, ci.Outcome, ci.Node, ci.Attempts)
	}
}

// panickyObserver panics in every method while armed.
type panickyObserver struct{ armed atomic.Bool }

func (o *panickyObserver) boom(method string) {
	if o.armed.Load() {
		panic(method + " bug")
	}
}
func (o *panickyObserver) CallDone(context.Context, CallInfo) { o.boom("CallDone") }
func (o *panickyObserver) Event(Event)                        { o.boom("Event") }
func (o *panickyObserver) ProbeDone(ProbeInfo)                { o.boom("ProbeDone") }
func (o *panickyObserver) TxRerun(string, string)             { o.boom("TxRerun") }
func (o *panickyObserver) FenceWaited(string, time.Duration)  { o.boom("FenceWaited") }
func (o *panickyObserver) EventDropped(Event)                 { o.boom("EventDropped") }
func (o *panickyObserver) ReloadDone(error)                   { o.boom("ReloadDone") }

// TestReview7ObserverPanicsEverywhere: an Observer whose every method
// panics. CallDone's panic used to reach the caller after the write had
// its place among the writes in flight handed to a transaction or a
// pinned connection the caller then never got: RunInTx and Conn leaked
// it, and the next Switchover waited for writes in flight until its
// context ended ("writes in flight on a:3306 did not end in time"); a
// ProbeDone panic on a prober would end the program. Now each panic is
// logged and stops there: the calls succeed, probes go on, Switchover
// completes and nothing stays in flight.
func TestReview7ObserverPanicsEverywhere(t *testing.T) {
	t.Parallel()
	c, _ := newFakeClusterWithProbes(t, 2, Settings{Health: HealthConfig{Interval: 10 * time.Millisecond}}, nil)
	var logged strings.Builder
	var logMu sync.Mutex
	c.log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logged.Write(p)
	}), nil))
	obs := &panickyObserver{}
	c.observer = obs
	c.fence.waited = func(d time.Duration) {
		defer c.recoverObserver("FenceWaited")
		obs.FenceWaited(c.name, d)
	}
	ctx := testCtx(t)
	if _, err := c.ExecContext(ctx, "INSERT x"); err != nil {
		t.Fatal(err)
	}
	obs.armed.Store(true)
	for _, call := range []struct {
		name string
		run  func() error
	}{
		{"ExecContext", func() error { _, err := c.ExecContext(ctx, "INSERT x"); return err }},
		{"RunInTx", func() error {
			return c.RunInTx(ctx, nil, func(ctx context.Context, tx *Tx) error { _, err := tx.ExecContext(ctx, "INSERT x"); return err })
		}},
		{"Conn", func() error {
			conn, err := c.Conn(ctx)
			if err == nil {
				conn.Close()
			}
			return err
		}},
		{"PingContext", func() error { return c.PingContext(ctx) }},
	} {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: the Observer's panic reached the caller: %v", call.name, p)
				}
			}()
			if err := call.run(); err != nil {
				t.Errorf("%s: %v", call.name, err)
			}
		}()
	}
	within(t, 5*time.Second, "Switchover after the Observer panicked", func() {
		if err := c.Switchover(ctx, "b", nil); err != nil {
			t.Errorf("Switchover: %v", err)
		}
	})
	if n := c.inflight.Load(); n != 0 {
		t.Errorf("%d calls still in flight", n)
	}
	has := func(m string) bool {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Contains(logged.String(), "method="+m)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !has("ProbeDone") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the next probe, every 10 ms
	}
	obs.armed.Store(false)
	for _, m := range []string{"CallDone", "Event", "ProbeDone"} {
		if !has(m) {
			t.Errorf("no panic of %s logged", m)
		}
	}
}

// TestReview7JoinObserversPanic: in JoinObservers(a, b), a panicking a
// kept b from every measurement; now b gets it and the panic goes on to
// the router, which logs it.
func TestReview7JoinObserversPanic(t *testing.T) {
	bad := &panickyObserver{}
	bad.armed.Store(true)
	rec := &recorder{}
	j := JoinObservers(bad, rec)
	func() {
		defer func() {
			if p := recover(); p != "CallDone bug" {
				t.Errorf("recovered %v, want the first Observer's panic", p)
			}
		}()
		j.CallDone(context.Background(), CallInfo{Cluster: "fake", Op: OpExec})
	}()
	if len(rec.calls) != 1 {
		t.Errorf("the second Observer got %d calls, want 1", len(rec.calls))
	}
	// The isolation costs no allocation.
	nops := JoinObservers(NopObserver{}, NopObserver{})
	ci := CallInfo{Cluster: "fake", Op: OpExec}
	if n := testing.AllocsPerRun(100, func() { nops.CallDone(context.Background(), ci) }); n != 0 {
		t.Errorf("JoinObservers' CallDone allocates %v times", n)
	}
}
