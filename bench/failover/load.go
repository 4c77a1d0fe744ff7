package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbrouter/dbrouter/ringtest"
)

// Outcome classes of a call, as its caller sees it.
const (
	classOK       = "ok"              // acknowledged by the first node tried
	classRetried  = "ok-retried"      // acknowledged after failed attempts on other nodes
	classUnknown  = "outcome-unknown" // dbrouter.ErrOutcomeUnknown
	classNotSent  = "not-sent"        // dbrouter.ErrNotSent: applied nowhere
	classFailed   = "failed"          // any other error (every naive error)
	classServer   = "server-error"    // a MySQL error, returned as is
	classDeadline = "deadline"        // the call's own deadline ended it (naive)
)

// classes lists the outcome classes in display order.
var classes = []string{classOK, classRetried, classUnknown, classNotSent, classServer, classDeadline, classFailed}

// acked reports whether the class is an acknowledged write.
func acked(class string) bool { return class == classOK || class == classRetried }

// writer is one way of writing to the ring.
type writer interface {
	// write inserts id and says how it went.
	write(ctx context.Context, id string) result
	// writerAddr is the node the side would write to now.
	writerAddr() string
	describe() string
	close()
}

// result is the outcome of one write.
type result struct {
	node     string // address that acknowledged the write or answered with an error
	class    string
	attempts int // failed attempts on other nodes before node
	// sent is true when a failed attempt may have reached a server.
	sent bool
	err  error
}

// call is the record of one write.
type call struct {
	caller   int
	id       string
	start    time.Duration // since the load started
	latency  time.Duration
	class    string
	node     string // A, B, ... or ""
	attempts int
	sent     bool
	err      string
}

func (c call) end() time.Duration { return c.start + c.latency }

// load runs the callers of one side.
type load struct {
	o      options
	w      writer
	ring   *ringtest.Ring
	prefix string
	names  map[string]string
	calls  []call
}

func newLoad(o options, w writer, ring *ringtest.Ring, side string) *load {
	names := map[string]string{}
	for i, a := range ring.Addrs() {
		names[a] = nodeName(i)
	}
	return &load{o: o, w: w, ring: ring, names: names, prefix: side[:1]}
}

// run starts the callers, calls fault after o.before, stops the callers
// o.after later and returns when every call has returned. It returns the
// fault's time since the load started (taken just before fault is called)
// and the side's writer at that moment.
func (l *load) run(ctx context.Context, fault func() error) (time.Duration, string, error) {
	var (
		wg     sync.WaitGroup
		stopAt atomic.Int64 // since t0, ns; 0: not set
		mu     sync.Mutex
	)
	t0 := time.Now()
	interval := time.Duration(0)
	if l.o.rate > 0 {
		interval = time.Duration(float64(l.o.callers) / l.o.rate * float64(time.Second))
	}
	for c := range l.o.callers {
		wg.Go(func() {
			var mine []call
			next := time.Duration(int64(interval) * int64(c) / int64(l.o.callers))
			for seq := 0; ctx.Err() == nil; seq++ {
				if interval > 0 {
					if d := next - time.Since(t0); d > 0 {
						time.Sleep(d)
					}
				}
				start := time.Since(t0)
				if s := stopAt.Load(); s != 0 && int64(start) >= s {
					break
				}
				id := fmt.Sprintf("%s%d-%d", l.prefix, c, seq)
				cctx, cancel := context.WithTimeout(ctx, l.o.callTimeout)
				r := l.w.write(cctx, id)
				cancel()
				rec := call{caller: c, id: id, start: start, latency: time.Since(t0) - start,
					class: r.class, node: l.names[r.node], attempts: r.attempts, sent: r.sent}
				if r.err != nil {
					rec.err = r.err.Error()
				}
				mine = append(mine, rec)
				if interval > 0 {
					next += interval
					if now := time.Since(t0); next < now {
						// Skip the slots missed while the call ran: the
						// load stays constant, it does not burst to catch up.
						next += (now - next + interval - 1) / interval * interval
					}
				}
			}
			mu.Lock()
			l.calls = append(l.calls, mine...)
			mu.Unlock()
		})
	}

	var faultAt time.Duration
	var writerAtFault string
	var ferr error
	select {
	case <-ctx.Done():
	case <-time.After(l.o.before):
		writerAtFault = l.names[l.w.writerAddr()]
		faultAt = time.Since(t0)
		ferr = fault()
		stopAt.Store(int64(faultAt + l.o.after))
	}
	if ferr != nil {
		stopAt.Store(1)
	}
	wg.Wait()
	slices.SortFunc(l.calls, func(a, b call) int { return int(a.start - b.start) })
	if ferr != nil {
		return 0, "", fmt.Errorf("injecting the fault: %w", ferr)
	}
	return faultAt, writerAtFault, ctx.Err()
}
