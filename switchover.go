package dbrouter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrSwitchoverRefused is matched (with errors.Is) by the error of a
// Switchover or Drain that did not move the writer: the target could not
// take the role, writes in flight did not end in time, or the target did
// not reach the old writer's position within the catch-up bound. The
// writer then stays where it was.
var ErrSwitchoverRefused = errors.New("switchover refused")

// DefaultCatchUpTimeout bounds, by default, how long a switchover waits for
// the new writer to reach the old writer's position.
const DefaultCatchUpTimeout = 5 * time.Second

// DefaultDrainTimeout bounds, by default, how long Drain waits for the
// calls in flight on the drained node to end.
const DefaultDrainTimeout = 30 * time.Second

// ErrDrainTimeout is matched (with errors.Is) by the error of a Drain that
// drained the node — no new call goes to it, and it stays drained until
// Undrain — but whose calls in flight on it (statements, open rows and
// transactions, connections held through Cluster.Conn or Writer, calls
// through Router.OpenDB or OpenReadDB) had not all ended within
// SwitchoverOptions.DrainTimeout or before ctx ended. Those calls go on;
// the node is not yet idle.
var ErrDrainTimeout = errors.New("calls in flight on the drained node did not end in time")

// SwitchoverOptions tunes Cluster.Switchover and Cluster.Drain. The zero
// value (or nil) is ready to use.
type SwitchoverOptions struct {
	// CatchUpTimeout bounds the wait for the new writer to reach the old
	// writer's position, once writes have drained; new writes wait at the
	// fence meanwhile. Zero means DefaultCatchUpTimeout.
	CatchUpTimeout time.Duration

	// ReadOnly, when set, is called to make the old writer read-only once
	// this router's writes have drained and the new writer has caught up
	// (on true), and to undo that (on false) if it returned an error —
	// which does not say whether read_only was set — or if the switch then
	// fails while the old writer keeps the role: for example SET GLOBAL
	// read_only over an administrator's connection, which the
	// application's user usually may not run. Other routers and clients
	// then stop writing there too. Without it, only this router's writes
	// move: its fence guarantees that none of them reaches the new writer
	// before it holds every write the old one acknowledged.
	//
	// It runs while this router's writes are held: a write it made
	// through this cluster (Writer, Conn, ExecContext) would wait for the
	// switch, and the switch for it, until ctx ends.
	ReadOnly func(ctx context.Context, addr string, on bool) error

	// DrainTimeout bounds how long Drain waits, once the node is drained,
	// for the calls in flight on it to end (see ErrDrainTimeout); ctx
	// bounds it too. When the node is the writer, it also bounds the wait
	// for the writes in flight on it (open transactions included) while
	// new writes are held, before the role moves: past it the drain is
	// refused (ErrSwitchoverRefused) and the node stays the writer,
	// undrained. Zero means DefaultDrainTimeout. Switchover ignores it.
	DrainTimeout time.Duration
}

// Switchover moves the cluster's writer to the node at address to (as in
// Nodes; "" means the next Up and writable node after the current writer,
// in configured order), on purpose, without failing a call: new writes wait
// at the failback fence (each within its own context), the writes in
// flight — statements, the rows of writes, open transactions — end, the
// new writer must reach the old writer's GTID position within
// CatchUpTimeout, the old writer is made read-only if opts.ReadOnly says
// how, and the writer role moves; the waiting writes then go to the new
// writer. Reads are not held.
//
// The new writer stays the writer while it is healthy: no failback moves
// the role back to an earlier node until the next Switchover or until it
// fails. When the move cannot happen the writer stays where it was and the
// error matches ErrSwitchoverRefused. ctx bounds the whole switch, the
// drain of writes in flight included. A cluster whose writer a
// WriterSource decides is switched through the source instead. On a
// cluster that Router.Reload retired or Close closed, the error matches
// ErrClosed and nothing is done; a switch that ends after a Reload took
// this cluster's planned moves over to its replacement returns an error
// matching ErrClosed too (the move happened here, but the new cluster did
// not learn of it).
func (c *Cluster) Switchover(ctx context.Context, to string, opts *SwitchoverOptions) error {
	return c.switchover(ctx, to, -1, opts)
}

// errNotFrom is switchover's answer when the writer is no longer node
// from.
var errNotFrom = errors.New("the writer moved")

// switchover is Switchover; from >= 0 moves the writer only off that node
// (Drain): when another node is the writer by then, nothing is done and
// the error is errNotFrom, so that the hook never flips a node the caller
// did not mean.
func (c *Cluster) switchover(ctx context.Context, to string, from int, opts *SwitchoverOptions) error {
	if opts == nil {
		opts = &SwitchoverOptions{}
	}
	if err := c.stillOpen(); err != nil {
		return err
	}
	c.awaitFirstRound(ctx)
	ti := -1
	if to != "" {
		if ti = c.nodeIndexByName(to); ti < 0 {
			return c.refused(to, fmt.Errorf("%q is not a node of the cluster (nodes: %v)", to, c.Nodes()))
		}
	}
	now := time.Now()
	c.mu.Lock()
	if from >= 0 && c.state.ready && c.state.writer != from {
		c.unlock()
		return errNotFrom
	}
	if ti < 0 {
		if ti = c.state.nextWriter(); ti < 0 {
			c.unlock()
			return c.refused("", errors.New("no other node is up, writable and not drained"))
		}
	}
	out, sw, err := c.state.planSwitch(ti, now)
	if err == nil && out.picker != nil {
		c.publish(out)
	}
	c.unlock()
	if err != nil {
		return c.refused(c.nodes[ti].addr, err)
	}
	if out.picker != nil {
		c.carryOut(out)
	}
	if sw == nil {
		return nil
	}
	return c.plannedSwitch(ctx, *sw, from >= 0, opts)
}

// plannedSwitch carries out a switchover behind the fence and reports why
// it did not happen, if it did not. For a Drain (drain), the wait for the
// writes in flight on the old writer is bounded by opts.DrainTimeout too,
// as the wait for the calls in flight on a drained replica is: a Drain
// with a transaction left open on the writer (even by the goroutine that
// called Drain) and a ctx without deadline must not hold every write of
// the router forever.
func (c *Cluster) plannedSwitch(ctx context.Context, sw fencedSwitch, drain bool, opts *SwitchoverOptions) error {
	catchUp := opts.CatchUpTimeout
	if catchUp <= 0 {
		catchUp = DefaultCatchUpTimeout
	}
	from, to := c.nodes[sw.from].addr, c.nodes[sw.to].addr
	var (
		caughtUp bool
		pos      string
		why      error
		held     bool
		flipped  bool // the hook was asked to make the old writer read-only and was not undone
		ended    bool
	)
	undo := func() {
		flipped = false
		if err := opts.ReadOnly(context.WithoutCancel(ctx), from, false); err != nil {
			why = fmt.Errorf("%w; and making %s writable again failed: %w", why, from, err)
		}
	}
	defer func() {
		if !ended {
			// A panic (in the hook): the switch ends, refused, and the
			// fence opens, or every later write would wait at it and
			// every later switch would be refused as under way. The
			// panic goes on to the caller; the hook is not called again.
			c.mu.Lock()
			out := c.state.switched(sw, held, false, "", time.Now())
			c.publish(out)
			c.unlock()
			defer c.carryOut(out)
		}
		if held {
			c.fence.unhold()
		}
	}()
	// Let the target catch up with the old writer's position before new
	// writes are held, so that the wait behind the fence is only for the
	// last few transactions; a target that cannot is refused before any
	// write waits.
	var ph switchPhases
	start := time.Now()
	caughtUp, pos, why = c.catchUpWithin(ctx, sw.from, sw.to, catchUp)
	if why == nil && !caughtUp {
		why = fmt.Errorf("%s did not reach %s's position %s within %v", to, from, pos, catchUp)
	}
	if why == nil {
		ph.rounds = c.closeIn(ctx, sw.from, sw.to, start.Add(catchUp), time.Since(start))
	}
	ph.before = time.Since(start)
	holdCtx := ctx
	if drain {
		var cancel context.CancelFunc
		holdCtx, cancel = context.WithTimeout(ctx, drainBound(opts))
		defer cancel()
	}
	t := time.Now()
	held = why == nil && c.fence.hold(holdCtx)
	ph.drain = time.Since(t)
	defer func() {
		if held {
			ph.held = time.Since(t)
			c.log.Info("dbrouter: switchover phases", "from", from, "to", to, "catch_up_before_hold", ph.before,
				"catch_up_rounds", ph.rounds, "drain", ph.drain, "catch_up_held", ph.catchUp, "read_only_hook", ph.hook,
				"writes_held", ph.held, "err", why)
		}
	}()
	switch {
	case why != nil:
	case !held && drain && ctx.Err() == nil:
		why = fmt.Errorf("writes in flight on %s (open transactions included) did not end within the drain timeout %v", from, drainBound(opts))
	case !held:
		why = fmt.Errorf("writes in flight on %s did not end in time: %w", from, ctx.Err())
	case c.writerNow() != sw.from:
		// A failover moved the writer before the fence held: writes went
		// to the new writer, which no catch-up checks. From here on the
		// writer may move only while no write of this router can go
		// anywhere (see clusterState.switched).
		why = fmt.Errorf("the writer moved off %s before writes were held", from)
	default:
		t := time.Now()
		caughtUp, pos, why = c.catchUpWithin(ctx, sw.from, sw.to, catchUp)
		ph.catchUp = time.Since(t)
		if why == nil && !caughtUp {
			why = fmt.Errorf("%s did not reach %s's position %s within %v", to, from, pos, catchUp)
		}
		if why == nil {
			// The state's read_only flags are as old as the last probe,
			// and a switchover's hook may have made this target
			// read-only well within a probe interval: writes let in on a
			// read-only writer would move, by the read-only rule, to a
			// node no catch-up checked.
			why = c.checkWritable(ctx, sw.to)
		}
		if why == nil && opts.ReadOnly != nil {
			flipped = true
			t := time.Now()
			err := opts.ReadOnly(ctx, from, true)
			ph.hook = time.Since(t)
			if err != nil {
				// Applied or not, the error does not say: undo it.
				caughtUp, why = false, fmt.Errorf("making %s read-only: %w", from, err)
				undo()
			} else {
				// Writes of other clients may have landed on the old
				// writer until it became read-only: its final position.
				caughtUp, pos, why = c.catchUpWithin(ctx, sw.from, sw.to, catchUp)
				if why == nil && !caughtUp {
					why = fmt.Errorf("%s did not reach %s's final position %s within %v", to, from, pos, catchUp)
				}
				if why != nil {
					undo()
				}
			}
		}
	}
	now := time.Now()
	c.mu.Lock()
	out := c.state.switched(sw, held, caughtUp && why == nil, pos, now)
	c.publish(out)
	moved := out.picker.writer == sw.to
	replaced := c.replaced // a Reload took the planned moves over before this one
	c.unlock()
	ended = true
	if flipped && !moved && (out.picker.writer == sw.from || out.picker.writer < 0) {
		// Refused after the old writer was made read-only (the target
		// failed or was drained meanwhile): it stays the writer, so it
		// must take writes again, before the held ones are let in.
		if why == nil {
			why = errors.New("the cluster's health changed during the switch")
		}
		undo()
	}
	c.carryOut(out) // the fence opens on return
	switch {
	case moved && replaced:
		return fmt.Errorf("dbrouter: cluster %q: switchover to %s: the writer moved here, but a Router.Reload replaced this cluster meanwhile and the new one chooses its writer by itself: %w (get the cluster from the router again and check its writer)", c.name, to, ErrClosed)
	case moved:
		return nil
	case why == nil:
		why = errors.New("the cluster's health changed during the switch")
	}
	return c.refused(to, why)
}

// switchPhases times a planned switch, for the log: where the time writes
// are held goes.
type switchPhases struct {
	before  time.Duration // catching up before writes are held
	rounds  int           // extra catch-up rounds before the hold (closeIn)
	drain   time.Duration // holding the fence: writes in flight ending
	catchUp time.Duration // the target reaching the final position, writes held
	hook    time.Duration // the ReadOnly hook
	held    time.Duration // from the hold to the end
}

// closeEnough is the catch-up wait under which the target is taken to be
// within a few transactions of the writer: the fence may then hold writes.
const closeEnough = 5 * time.Millisecond

// closeIn waits, before writes are held, until the target lags the writer
// by a few transactions only: under a steady write load the target that
// just reached the writer's position is behind again by the writes made
// during that wait, and that backlog is what writes would wait for behind
// the fence. So it waits again for the writer's newer position, while the
// last wait took longer than closeEnough, until deadline, for at most 20
// rounds; a round that fails or times out ends it (the wait behind the
// fence decides then), and so does a round that took more than three
// quarters of the one before: the target then applies no faster than the
// writer commits, and more rounds would only delay the switch. It returns
// the number of rounds.
func (c *Cluster) closeIn(ctx context.Context, from, to int, deadline time.Time, last time.Duration) int {
	rounds := 0
	for rounds < 20 && last > closeEnough {
		left := time.Until(deadline)
		if left < 10*closeEnough {
			break
		}
		t := time.Now()
		ok, _, err := c.catchUpWithin(ctx, from, to, left)
		prev := last
		last = time.Since(t)
		rounds++
		if err != nil || !ok || 4*last > 3*prev {
			break
		}
	}
	return rounds
}

// writerNow returns the state machine's writer (-1: none).
func (c *Cluster) writerNow() int {
	c.mu.Lock()
	defer c.unlock()
	return c.state.writer
}

// readOnlyQuery reads a node's read_only flag.
const readOnlyQuery = "SELECT @@global.read_only"

// checkWritable returns why node i cannot take writes now: it is
// read-only (a probe is then asked for, so that the state learns it), or
// its flag could not be read.
func (c *Cluster) checkWritable(ctx context.Context, i int) error {
	var ro string
	if err := c.nodes[i].db().QueryRowContext(ctx, readOnlyQuery).Scan(&ro); err != nil {
		return fmt.Errorf("reading %s's read_only: %w", c.nodes[i].addr, err)
	}
	switch strings.ToLower(ro) {
	case "1", "on", "true":
		c.requestProbe(i)
		return fmt.Errorf("%s is read-only", c.nodes[i].addr)
	}
	return nil
}

// Drain takes the node at addr out of service: no new call is sent to it
// and it never becomes the writer, until Undrain (except by a
// WriterSource's decision, which wins: see WriterDecision.Writer); calls
// in flight on it
// finish, and Drain returns once they have: then nothing of this router
// runs on the node. When it is the writer, the role first moves to the
// next Up and writable node with Switchover (same rules and options, but
// the wait for the writes in flight on it, new writes held, is bounded by
// opts.DrainTimeout as well as ctx); if that fails, the node is not
// drained and the error matches ErrSwitchoverRefused. The wait for the
// calls in flight on the drained node is bounded by
// opts.DrainTimeout (default DefaultDrainTimeout) and ctx: at the bound
// the node stays drained and the error matches ErrDrainTimeout. On a
// retired or closed cluster, Drain and Undrain return an error matching
// ErrClosed. A Router.Reload that replaces the cluster keeps the node
// drained if it is still configured.
func (c *Cluster) Drain(ctx context.Context, addr string, opts *SwitchoverOptions) error {
	if err := c.drain(ctx, addr, opts); err != nil {
		return err
	}
	return c.awaitIdle(ctx, c.nodeIndexByName(addr), drainBound(opts))
}

// drainBound returns opts.DrainTimeout or its default.
func drainBound(opts *SwitchoverOptions) time.Duration {
	if opts == nil || opts.DrainTimeout <= 0 {
		return DefaultDrainTimeout
	}
	return opts.DrainTimeout
}

// awaitIdle waits until no connection of node i's pools is in use and no
// call through a Router's connector (OpenDB, OpenReadDB) runs there — no
// call of this router is in flight there — for at most bound and until
// ctx ends.
func (c *Cluster) awaitIdle(ctx context.Context, i int, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		inUse := int(c.nodes[i].routedBusy.Load()) // Router.OpenDB, OpenReadDB
		for _, db := range c.nodes[i].openPools() {
			inUse += db.Stats().InUse
		}
		if inUse == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dbrouter: cluster %q: drain %s: %w: %d connection(s) still in use (bound %v; the node stays drained until Undrain): %w",
				c.name, c.nodes[i].addr, ErrDrainTimeout, inUse, bound, ctx.Err())
		case <-tick.C:
		}
	}
}

// drain is Drain without the wait for the calls in flight.
func (c *Cluster) drain(ctx context.Context, addr string, opts *SwitchoverOptions) error {
	if err := c.stillOpen(); err != nil {
		return err
	}
	i := c.nodeIndexByName(addr)
	if i < 0 {
		return fmt.Errorf("dbrouter: cluster %q: drain: %q is not a node of the cluster (nodes: %v)", c.name, addr, c.Nodes())
	}
	c.awaitFirstRound(ctx)
	// The writer check and the drain are one step under c.mu: a switch
	// that made the node the writer in between would have it drained
	// while writer, and the role would move off it without the fence.
	for range 3 {
		now := time.Now()
		c.mu.Lock()
		if c.replaced {
			c.mu.Unlock()
			return c.replacedErr()
		}
		if c.pick.Load().writer != i {
			out := c.state.setDrained(i, true, drainLocal, now)
			c.publish(out)
			c.unlock()
			c.carryOut(out)
			return nil
		}
		next := c.state.nextWriter()
		c.unlock()
		if next < 0 {
			return c.refused("", fmt.Errorf("cannot drain the writer %s: no other node is up, writable and not drained", c.nodes[i].addr))
		}
		if err := c.switchover(ctx, c.nodes[next].addr, i, opts); err != nil && err != errNotFrom {
			return err
		}
	}
	return c.refused("", fmt.Errorf("cannot drain %s: the writer role keeps coming back to it", c.nodes[i].addr))
}

// Undrain puts a node drained by Drain back in service. It may then take
// the writer role back by the usual failback rules, unless a Switchover
// chose the current writer. It undoes only Drain: a node that a
// WriterSource drained too (NodeDrainer: a fleet's drain key) stays
// drained until the source undrains it.
func (c *Cluster) Undrain(addr string) error {
	return c.setDrained(addr, false, drainLocal, "undrain")
}

// setDrained drains (on) or undrains node addr for one origin: Undrain,
// and a WriterSource's NodeDrainer. A drain of the writer is refused: the
// role must move off it first (Drain does that through a switchover).
func (c *Cluster) setDrained(addr string, on bool, by drainOrigin, verb string) error {
	i := c.nodeIndexByName(addr)
	if i < 0 {
		return fmt.Errorf("dbrouter: cluster %q: %s: %q is not a node of the cluster (nodes: %v)", c.name, verb, addr, c.Nodes())
	}
	if err := c.stillOpen(); err != nil {
		return err
	}
	now := time.Now()
	c.mu.Lock()
	if c.replaced {
		c.mu.Unlock()
		return c.replacedErr()
	}
	if on && (c.state.writer == i || c.pick.Load().writer == i) {
		c.unlock()
		return fmt.Errorf("dbrouter: cluster %q: cannot drain %s: it is the writer (move the role off it first)", c.name, addr)
	}
	out := c.state.setDrained(i, on, by, now)
	c.publish(out)
	c.unlock()
	c.carryOut(out)
	return nil
}

// nodeIndexByName returns the index of the node named addr, as Nodes
// spells it or as it was configured ("db1" for "db1:3306"), or -1.
func (c *Cluster) nodeIndexByName(addr string) int {
	if i := c.nodeIndexByAddr(addr); i >= 0 {
		return i
	}
	if n, err := normalizeAddr(addr); err == nil {
		return c.nodeIndexByAddr(n)
	}
	return -1
}

// refused wraps why as a switchover refusal of this cluster.
func (c *Cluster) refused(to string, why error) error {
	if to == "" {
		return fmt.Errorf("dbrouter: cluster %q: %w: %w", c.name, ErrSwitchoverRefused, why)
	}
	return fmt.Errorf("dbrouter: cluster %q: switchover to %s: %w: %w", c.name, to, ErrSwitchoverRefused, why)
}
