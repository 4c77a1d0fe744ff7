package dbrouter

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"
)

// maxProbeWorkers bounds the goroutines that run probes for one router,
// however many nodes it probes: a router with 1,000 clusters of 3 nodes in
// use runs at most this many probes at once, plus one scheduling goroutine.
// A probe takes at most the probe timeout (a frozen node holds a worker for
// that long, not longer), so the pool keeps up with its nodes as long as
// the nodes that hang at the same moment are fewer than the workers.
const maxProbeWorkers = 128

// A probe may start up to a tenth of its interval early (probeEarly), so
// that the dispatcher wakes about once per that window and sends the
// probes due by then together: a router with thousands of nodes probes in
// bursts, which costs the machine fewer wake-ups of idle threads and CPUs
// than probes spread one by one over time (docs/health.md, "What a probe
// costs"). A probe asked for at once (a stall check, a confirmation) does
// not wait for the next burst.
const (
	probeEarlyShare = 10                     // a tenth of the interval
	probeEarlyMax   = 100 * time.Millisecond // and never more
)

// probeEarly returns how early a probe due every interval may start.
func probeEarly(interval time.Duration) time.Duration {
	return min(interval/probeEarlyShare, probeEarlyMax)
}

// probeScheduler runs the health probes of every node in use of a router
// (or, for a cluster built outside a router, of that cluster) on a bounded
// pool of worker goroutines: one timer queue ordered by when each node's
// next probe is due, one goroutine that hands due probes to idle workers,
// and workers started on demand up to maxProbeWorkers. Each node has one
// slot, which is either queued or running, never both: a node is never
// probed twice at once, and a node whose probe hangs delays no other node
// while a worker is free.
type probeScheduler struct {
	mu      sync.Mutex
	queue   probeQueue
	workers int
	started bool
	closed  bool
	waiting int // workers waiting for a slot
	work    chan *probeSlot
	wake    chan struct{} // 1-buffered: the queue's head changed
	left    chan struct{} // 1-buffered: a worker ended (idle)
	stop    chan struct{}
	wg      sync.WaitGroup // the dispatcher and the workers
}

// spareProbeWorkers is how many workers may wait for work at once: a
// worker that ends a probe while that many wait ends too, so that the
// workers started while many nodes hung do not stay for the router's
// lifetime once the nodes answer quickly again.
const spareProbeWorkers = 8

// probeSlot is one node's place in its scheduler.
type probeSlot struct {
	c       *Cluster
	i       int
	due     time.Time
	early   time.Duration // how long before due the probe may start (probeEarly)
	index   int           // in the queue; -1 when not queued
	running bool          // a worker is probing the node
	again   bool          // probe again as soon as the running probe ends
	removed bool          // the cluster is closed: the slot is neither queued nor requeued
}

func newProbeScheduler() *probeScheduler {
	return &probeScheduler{work: make(chan *probeSlot), wake: make(chan struct{}, 1), left: make(chan struct{}, 1),
		stop: make(chan struct{})}
}

// add queues the slots of a cluster whose probers start, due at once. The
// cluster's wait group counts each slot until it is removed.
func (s *probeScheduler) add(slots []*probeSlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		s.wg.Add(1)
		go s.dispatch()
	}
	now := time.Now()
	for _, sl := range slots {
		sl.due, sl.index = now, -1
		heap.Push(&s.queue, sl)
	}
	s.poke()
}

// now makes a slot due at once: queued, it moves to the head; running, it
// runs again as soon as its probe ends.
func (s *probeScheduler) now(sl *probeSlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case sl.removed:
	case sl.running:
		sl.again = true
	case sl.index >= 0:
		if now := time.Now(); sl.due.After(now) {
			sl.due = now
			heap.Fix(&s.queue, sl.index)
			s.poke()
		}
	}
}

// remove takes a closing cluster's slots out of the queue; the slots being
// probed leave when their probe ends. Each slot leaving ends its count in
// the cluster's wait group.
func (s *probeScheduler) remove(slots []*probeSlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range slots {
		sl.removed = true
		if sl.index >= 0 {
			heap.Remove(&s.queue, sl.index)
			sl.c.wg.Done()
		}
	}
}

// close stops the dispatcher and the workers, once every cluster using the
// scheduler is closed, and waits for them. A nil scheduler (a Router built
// by hand in a test) has nothing to stop.
func (s *probeScheduler) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
}

// poke wakes the dispatcher; s.mu must be held.
func (s *probeScheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// goroutines returns how many goroutines the scheduler runs.
func (s *probeScheduler) goroutines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return 0
	}
	return s.workers + 1
}

// dispatch hands due slots to workers, in the order they fell due.
func (s *probeScheduler) dispatch() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var wait time.Duration = -1
		for s.queue.Len() > 0 {
			now := time.Now()
			head := s.queue[0]
			if d := head.due.Sub(now); d > head.early {
				// Sleep at least the head's window: the probes falling
				// due meanwhile go out together (see probeEarly).
				wait = max(d-head.early, head.early)
				break
			}
			heap.Pop(&s.queue)
			head.running = true
			s.mu.Unlock()
			if !s.handOff(head) {
				return
			}
			s.mu.Lock()
		}
		s.mu.Unlock()
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-s.wake:
		case <-timer.C:
		case <-s.stop:
			return
		}
	}
}

// handOff gives a due slot to an idle worker, or to a new one while there
// are fewer than maxProbeWorkers, or else waits for a worker to be free (or
// to end, making room for a new one). It returns false when the scheduler
// stops meanwhile.
func (s *probeScheduler) handOff(sl *probeSlot) bool {
	for {
		select {
		case s.work <- sl:
			return true
		default:
		}
		s.mu.Lock()
		if s.workers < maxProbeWorkers {
			s.workers++
			s.wg.Add(1)
			s.mu.Unlock()
			go s.worker(sl)
			return true
		}
		s.mu.Unlock()
		select {
		case s.work <- sl:
			return true
		case <-s.left:
		case <-s.stop:
			return false
		}
	}
}

// worker probes the slots it is handed until the scheduler stops, or
// until it ends a probe while spareProbeWorkers others wait for work.
func (s *probeScheduler) worker(sl *probeSlot) {
	defer s.wg.Done()
	for {
		s.run(sl)
		s.mu.Lock()
		if s.waiting >= spareProbeWorkers {
			s.workers--
			s.mu.Unlock()
			select {
			case s.left <- struct{}{}:
			default:
			}
			return
		}
		s.waiting++
		s.mu.Unlock()
		select {
		case sl = <-s.work:
		case <-s.stop:
			return
		}
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}
}

// run probes a slot's node once and queues the slot again: due one probe
// interval after this probe started or, when the probe just made the node
// Suspect (confirming) or a probe was asked for meanwhile, at once.
func (s *probeScheduler) run(sl *probeSlot) {
	c := sl.c
	start := time.Now()
	if !c.closed.Load() {
		c.probe(sl.i)
	}
	again := c.ctx.Err() == nil && c.confirming(sl.i)
	s.mu.Lock()
	defer s.mu.Unlock()
	sl.running = false
	if sl.removed {
		c.wg.Done()
		return
	}
	iv := c.probeInterval(sl.i, start)
	sl.due, sl.early = start.Add(iv), probeEarly(iv)
	if again || sl.again {
		sl.due = time.Now()
	}
	sl.again = false
	heap.Push(&s.queue, sl)
	if sl.index == 0 {
		s.poke()
	}
}

// probeQueue is a min-heap of slots by due time (container/heap).
type probeQueue []*probeSlot

func (q probeQueue) Len() int           { return len(q) }
func (q probeQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q probeQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *probeQueue) Push(x any) {
	sl := x.(*probeSlot)
	sl.index = len(*q)
	*q = append(*q, sl)
}
func (q *probeQueue) Pop() any {
	old := *q
	sl := old[len(old)-1]
	old[len(old)-1] = nil
	sl.index = -1
	*q = old[:len(old)-1]
	return sl
}

// probeSlots holds a cluster's slots once its probers have started.
type probeSlots = atomic.Pointer[[]*probeSlot]
