package dbrouter

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// dispatcher delivers events in order on its own goroutine, so that a slow
// callback or log handler never delays a probe or a call. When its buffer
// is full it drops events and counts them.
type dispatcher struct {
	log     *slog.Logger
	onEvent func(Event)

	mu      sync.RWMutex // guards closed against send
	closed  bool
	ch      chan Event
	done    chan struct{}
	dropped atomic.Int64
}

const eventBuffer = 1024

func newDispatcher(log *slog.Logger, onEvent func(Event)) *dispatcher {
	d := &dispatcher{log: log, onEvent: onEvent, ch: make(chan Event, eventBuffer), done: make(chan struct{})}
	go d.run()
	return d
}

// send queues ev for the callback; it returns false when the queue had no
// room and ev was dropped (counted). A cluster reports a dropped event to
// its Observer itself, outside its lock (Cluster.unlock).
func (d *dispatcher) send(ev Event) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return true
	}
	select {
	case d.ch <- ev:
		return true
	default:
		d.dropped.Add(1)
		return false
	}
}

func (d *dispatcher) run() {
	defer close(d.done)
	for ev := range d.ch {
		level := slog.LevelInfo
		if ev.To == StateDown.String() || ev.To == StateSuspect.String() || (ev.Kind == EventWriter && ev.To == "") {
			level = slog.LevelWarn
		}
		d.log.Log(context.Background(), level, "dbrouter: "+ev.Kind.String()+" changed",
			"cluster", ev.Cluster, "node", ev.Node, "from", ev.From, "to", ev.To, "cause", ev.Cause)
		if d.onEvent != nil {
			d.onEvent(ev)
		}
	}
}

// close delivers the events already queued and stops.
func (d *dispatcher) close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		close(d.ch)
	}
	d.mu.Unlock()
	<-d.done
	if n := d.dropped.Load(); n > 0 {
		d.log.Warn("dbrouter: events dropped because the OnEvent callback was too slow", "dropped", n)
	}
}
