package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Cluster is an ordered list of nodes that may each be the writer of the
// same data, typically a circular replication ring A→B→C→A. Calls go to the
// writer, the first node in configured order that is believed healthy and
// writable, and fail over to the next node when that is safe: a statement
// that provably never reached a server is retried on the next node; one
// that may have reached it is returned as *OutcomeUnknownError, unless it
// is a read, which runs in a read-only session and so cannot have written
// anything.
//
// A Cluster is safe for concurrent use. Get one from Router.Cluster.
type Cluster struct {
	name     string
	nodes    []*node
	settings Settings // effective settings, defaults applied
	log      *slog.Logger
	events   *dispatcher // nil: no events (tests)
	observer Observer    // nil: none

	pick   atomic.Pointer[picker] // routing snapshot, rebuilt on health changes
	rr     atomic.Uint64          // round-robin read counter
	closed atomic.Bool

	// Calls in flight, counted so that a cluster retired by Router.Reload
	// is closed only after they end (rows until they are closed, a
	// transaction until it ends).
	inflight  atomic.Int64
	leaveFn   func() // c.leave, made once (the rows of a read hold it)
	retiring  atomic.Bool
	drained   chan struct{}
	drainOnce sync.Once

	// mu serialises the inputs of the writer-decision state machine
	// (state.go) and the publication of its pickers.
	mu    sync.Mutex
	state *clusterState
	// replaced: a Reload has carried this cluster's planned moves (drained
	// nodes, pinned writer) over to the cluster that replaces it; a later
	// Drain or Undrain here is refused, as it would not reach the cluster
	// in use (reload.go). Guarded by mu.
	replaced bool
	// obsPending holds the Observer's events (and dropped-event reports)
	// of published transitions, in order, until c.unlock delivers them
	// outside mu; obsFlushing is set while a goroutine delivers them.
	// Both are guarded by mu.
	obsPending  []obsItem
	obsFlushing bool
	ready       chan struct{} // closed when the first probe round has ended
	// source, when set, decides the writer (writer_source.go).
	source     WriterSource
	stopSource func()

	// fence keeps writes off a node while a fenced switch moves the writer
	// role to it (fence.go).
	fence fence

	ctx         context.Context // cancelled by close; bounds probes
	cancel      context.CancelFunc
	stop        chan struct{}
	sched       *probeScheduler // the router's, or the cluster's own (ownSched)
	ownSched    bool
	slots       probeSlots // the nodes' places in sched, once the probers started
	dogs        []stallDog // one per node: the stall watch (health.go)
	idle        idleWatch  // whether calls use the cluster (probe_idle.go)
	probersOnce sync.Once
	closeMu     sync.Mutex // orders starting the probers before close waits for them
	wg          sync.WaitGroup
}

// initHealth sets up the state machine and the first picker, once nodes
// are in place. Every node starts Up. With probes, the writer is chosen
// once every node has been probed once; calls wait for that (see
// awaitFirstRound).
func (c *Cluster) initHealth() {
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.stop = make(chan struct{})
	c.drained = make(chan struct{})
	c.leaveFn = c.leave
	c.dogs = make([]stallDog, len(c.nodes))
	c.ready = make(chan struct{})
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr
		n.cluster, n.index = c, i
	}
	var p *picker
	if obs := c.observer; obs != nil {
		c.fence.waited = func(d time.Duration) {
			defer c.recoverObserver("FenceWaited")
			obs.FenceWaited(c.name, d)
		}
	}
	c.state, p = newClusterState(c.name, addrs, c.settings, c.source != nil, time.Now())
	c.pick.Store(p)
	if p.ready {
		close(c.ready)
	}
	if c.source != nil {
		c.stopSource = c.source.Watch(c.name, addrs, sink{c})
	}
}

// publish stores the state machine's new picker and queues its events.
// c.mu must be held, so that pickers are published, and events delivered,
// in the order of the transitions (queueing never blocks: see dispatcher).
func (c *Cluster) publish(out stateOutput) {
	close(c.pick.Swap(out.picker).changed)
	if out.ready {
		close(c.ready)
	}
	c.emit(out.events)
}

// carryOut does what a transition of the state machine asked, outside
// c.mu: close connections, probe at once, switch the writer behind the
// fence.
func (c *Cluster) carryOut(out stateOutput) {
	for _, i := range out.closeConns {
		c.nodes[i].closeConns()
	}
	for _, i := range out.probeNow {
		c.requestProbe(i)
	}
	if out.fenced != nil {
		// Not on the caller's goroutine (a call's outcome can ask for a
		// switch): the switch may hold the fence for a second.
		sw := *out.fenced
		c.closeMu.Lock()
		if !c.closed.Load() {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.switchWriter(sw)
			}()
		}
		c.closeMu.Unlock()
	}
}

// reportCall records the outcome of a call's attempt on node i, as the
// failover loop classified it (class 0: success).
func (c *Cluster) reportCall(i int, write bool, class ErrorClass, err error) {
	now := time.Now()
	c.mu.Lock()
	out := c.state.callResult(i, write, class, err, now)
	c.publish(out)
	c.unlock()
	c.carryOut(out)
}

// writerIndex returns the writer's index (-1: none), once the first probe
// round has ended (see awaitFirstRound).
func (c *Cluster) writerIndex() int {
	p := c.pick.Load()
	if !p.ready {
		c.awaitFirstRound(context.Background())
		p = c.pick.Load()
	}
	return p.writer
}

// awaitFirstRound waits, within ctx, until the first probe round has ended
// and the writer is chosen, for at most twice the probe timeout (probes are
// bounded by it; the bound only matters when the machine is starved).
func (c *Cluster) awaitFirstRound(ctx context.Context) {
	c.startProbers()
	select {
	case <-c.ready:
		return
	default:
	}
	t := time.NewTimer(2*c.settings.Health.Timeout + 250*time.Millisecond)
	defer t.Stop()
	select {
	case <-c.ready:
	case <-ctx.Done():
	case <-t.C:
	case <-c.stop:
	}
}

// Name returns the cluster's configured name.
func (c *Cluster) Name() string { return c.name }

// Nodes returns the nodes' addresses in configured (failover) order.
func (c *Cluster) Nodes() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr
	}
	return addrs
}

// ExecContext runs a statement that does not return rows on the writer.
//
// If the statement provably did not reach a node, it is retried on the next
// one within ctx's deadline. If the connection broke after the statement may
// have reached a node, ExecContext returns an *OutcomeUnknownError
// (errors.Is(err, ErrOutcomeUnknown)) and does not retry: the statement may
// or may not have been applied. Server errors (*mysql.MySQLError) are
// returned as they are, except read-only refusals, which move the writer to
// the next node, where the statement runs again — unless it is several
// statements (multiStatements=true) or a CALL or compound statement, which
// may have applied part of itself before the refusal: that refusal is
// returned as it is. When no node can take the statement the error is a
// *NoNodeError listing each node's failure.
//
// A statement that is safe to apply twice (an upsert to a fixed value, a
// DELETE by key) can be marked with WithIdempotent(ctx): it is then retried
// on the next node after an outcome-unknown failure too.
func (c *Cluster) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := c.call(ctx, OpExec, false, isIdempotent(ctx), func(ctx context.Context, n *node) (bool, error) {
		conn, err := n.db().Conn(ctx)
		if err != nil {
			return false, err
		}
		defer conn.Close()
		res, err = conn.ExecContext(ctx, query, args...)
		return true, c.refusedPart(n, query, err)
	})
	return res, err
}

// QueryContext runs a query on the node chosen by the cluster's read policy
// (by default the writer, so reads see the caller's own writes) and returns
// its rows.
//
// A single statement whose first keyword is SELECT, SHOW, DESCRIBE or
// EXPLAIN is a read: it runs in a read-only session and is retried on the
// next node whatever the failure. A read that turns out to write — a
// SELECT of a stored function that inserts, NEXTVAL, SELECT ... FOR UPDATE
// — is refused by the server in that session (error 1792) before it
// changes anything, and is then run again as a write. Any other statement,
// and any string of several statements, is a write, as in ExecContext; its
// rows (INSERT ... RETURNING) keep a failback from moving the writer until
// they are closed. Failures while iterating the returned rows are reported
// by Rows.Err and are not retried: the server's errors as they are, a
// connection lost (or the query's context ending) while a row is read as
// an *OutcomeUnknownError — for a read, which applied nothing, safe to run
// again — and a read stuck on a frozen node is released by the stall
// check, as a call is.
func (c *Cluster) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if !isReadStatement(query) {
		return c.queryWrite(ctx, query, args)
	}
	var rows *sql.Rows
	err := c.call(ctx, OpQuery, true, true, func(ctx context.Context, n *node) (bool, error) {
		var err error
		rows, err = n.pool(poolRead).QueryContext(ctx, query, args...)
		return true, err
	})
	if err != nil && refusedInReadOnlySession(err) {
		return c.queryWrite(ctx, query, args)
	}
	return rows, err
}

// queryWrite runs a query that may write on the writer, with the rules of
// ExecContext; its rows hold the call's place behind the fence until they
// are closed.
func (c *Cluster) queryWrite(ctx context.Context, query string, args []any) (*sql.Rows, error) {
	var rows *sql.Rows
	err := c.callHandingOn(ctx, OpQuery, isIdempotent(ctx), func(ctx context.Context, n *node) (bool, error) {
		var err error
		rows, err = n.db().QueryContext(ctx, query, args...)
		return true, c.refusedPart(n, query, err)
	})
	return rows, err
}

// QueryRowContext runs a query that is expected to return at most one row,
// with the failover rules of QueryContext. Errors are deferred until Row's
// Scan is called.
func (c *Cluster) QueryRowContext(ctx context.Context, query string, args ...any) *Row {
	rows, err := c.QueryContext(ctx, query, args...)
	return &Row{rows: rows, err: err}
}

// BeginTx starts a transaction on the writer. The transaction keeps one
// connection to that node for its whole life and never moves: if the node
// fails, the transaction's calls fail. BeginTx itself fails over like a
// statement that was not sent. Until the transaction ends — Commit,
// Rollback, or the end of ctx, on which database/sql rolls it back — no
// failback moves the writer.
func (c *Cluster) BeginTx(ctx context.Context, opts *sql.TxOptions) (*Tx, error) {
	var tx *Tx
	err := c.callHandingOn(ctx, OpBegin, false, func(ctx context.Context, n *node) (bool, error) {
		stx, err := n.db().BeginTx(ctx, opts)
		if err != nil {
			// START TRANSACTION changes nothing, so a failure here is
			// safe to retry on the next node whatever its cause.
			if classify(err, true) == ClassServerError {
				return true, err
			}
			return false, err
		}
		tx = &Tx{tx: stx, ctx: ctx, pass: passOf(ctx), cluster: c.name, node: n.addr, owner: c, idx: c.nodeIndex(n)}
		return true, nil
	})
	return tx, err
}

// Conn returns a dedicated connection to the writer, for session state that
// must stay on one connection (temporary tables, user locks). The caller
// must Close it. The connection does not fail over: once its node is no
// longer the writer (after a failover or a failback), its statements are
// refused with an error matching ErrNotSent, and the caller gets a new
// connection from Conn. Each statement on it, and each transaction begun on
// it until it ends, keeps a failback from moving the writer meanwhile. A
// statement or COMMIT whose connection was lost after sending — also when
// the node stopped answering and a stall check took it Down — returns an
// *OutcomeUnknownError; a BeginTx or ping whose connection was lost, which
// applies nothing, an error matching ErrNotSent. A statement (or a read of
// its rows) whose context ends while it runs is typed as in ExecContext:
// an *OutcomeUnknownError (a BeginTx, ping or prepare: an error matching
// ErrNotSent), and one whose context had ended before it was sent an error
// matching ErrNotSent; both match the context's error too. What
// database/sql checks itself before calling the driver (a *sql.Tx whose
// context has ended) returns its bare context error.
func (c *Cluster) Conn(ctx context.Context) (*sql.Conn, error) {
	var conn *sql.Conn
	err := c.call(ctx, OpConn, false, false, func(ctx context.Context, n *node) (bool, error) {
		var err error
		conn, err = n.pool(poolPinned).Conn(ctx)
		var ce *connectError
		if errors.As(err, &ce) {
			// The pinned pool types a failed connect for Writer's
			// callers; here it is one attempt of the call, typed with
			// the others.
			err = ce
		}
		return false, err
	})
	return conn, err
}

// Writer returns a connection pool pinned to the current writer, for code
// that needs one node's *sql.DB for a while (migrations, ...). It does not
// fail over: calls made through it go to that node only, and once the node
// is no longer the writer they are refused with an error matching
// ErrNotSent, and the caller calls Writer again to get the new writer's
// pool. For a *sql.DB that fails over — what gorm, sqlx, sqlc, bun or ent
// should be given — use Router.OpenDB. Each statement, and each transaction until it ends, keeps a
// failback from moving the writer meanwhile. A connection the pool cannot
// open fails the call with an error matching ErrNotSent (OpConnect). Lost
// connections and contexts that end while a statement runs are typed as on
// Conn (a
// context that has ended before database/sql hands the pool's
// connection over, or while waiting for one, returns database/sql's bare
// context error). The pool is owned by the router: do not close it.
//
// On a cluster's first use Writer waits for the first probe round, as
// WriterAddr does. When no node qualifies as writer, Writer returns the
// first node's pool, whose calls are refused until that node is the writer
// again.
func (c *Cluster) Writer() *sql.DB {
	if w := c.writerIndex(); w >= 0 {
		return c.nodes[w].pool(poolPinned)
	}
	return c.nodes[0].pool(poolPinned)
}

// pinnedPass gives a statement or transaction on node i's pinned pool its
// pass: it waits at the fence, within ctx, and is refused when node i is
// not the writer.
func (c *Cluster) pinnedPass(ctx context.Context, i int) (*pass, error) {
	p, err := c.writePass(ctx, OpPinned)
	if err != nil {
		return nil, err
	}
	if w := c.pick.Load().writer; w != i {
		p.giveBack()
		now := "no node"
		if w >= 0 {
			now = c.nodes[w].addr
		}
		return nil, &notSentError{cluster: c.name, op: OpPinned, err: fmt.Errorf(
			"node %s is no longer the writer (now %s): get a new connection from Cluster.Conn or Cluster.Writer", c.nodes[i].addr, now)}
	}
	return p, nil
}

// WriterAddr returns the address of the current writer, or "" when no node
// is up and writable. On a cluster's first use it waits for the first probe
// round, which chooses the writer (at most twice the probe timeout plus
// 250 ms; a few milliseconds on a healthy ring).
func (c *Cluster) WriterAddr() string {
	if w := c.writerIndex(); w >= 0 {
		return c.nodes[w].addr
	}
	return ""
}

// nodeIndex returns n's position in c.nodes.
func (c *Cluster) nodeIndex(n *node) int {
	for i, m := range c.nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// enter counts a call in flight; it fails once the cluster is retired or
// closed.
func (c *Cluster) enter() error {
	c.inflight.Add(1)
	if err := c.stillOpen(); err != nil {
		c.leave()
		return err
	}
	return nil
}

// stillOpen reports, as an error matching ErrClosed and ErrNotSent, a
// cluster that is retired or closed; a write checks again after waiting at
// the fence, which Close or Reload may have opened meanwhile.
func (c *Cluster) stillOpen() error {
	if c.retiring.Load() {
		return &notSentError{cluster: c.name, op: "call", err: fmt.Errorf("%w: the cluster was removed or replaced by Router.Reload; get it from the router again", ErrClosed)}
	}
	if c.closed.Load() {
		return &notSentError{cluster: c.name, op: "call", err: ErrClosed}
	}
	return nil
}

// replacedErr is the error of a Drain or Undrain on a cluster whose
// planned moves a Reload has already carried over to its replacement.
func (c *Cluster) replacedErr() error {
	return &notSentError{cluster: c.name, op: "call", err: fmt.Errorf("%w: the cluster was replaced by Router.Reload (its drained nodes and pinned writer were carried over before this change); get it from the router again", ErrClosed)}
}

// leave ends a call counted by enter.
func (c *Cluster) leave() {
	if c.inflight.Add(-1) == 0 && c.retiring.Load() {
		c.drainOnce.Do(func() { close(c.drained) })
	}
}

// retire refuses new calls, waits until the calls in flight have ended and
// closes the cluster.
func (c *Cluster) retire() {
	c.retiring.Store(true)
	if c.inflight.Load() == 0 {
		c.drainOnce.Do(func() { close(c.drained) })
	}
	<-c.drained
	c.close()
}

// stopWaiting makes a retiring cluster close now, whatever is still in
// flight (Router.Close: rows never closed, a transaction never ended), as
// sql.DB.Close does with its connections.
func (c *Cluster) stopWaiting() {
	c.drainOnce.Do(func() { close(c.drained) })
}

// close stops the probers and closes every node's pool.
func (c *Cluster) close() error {
	c.closeMu.Lock()
	if c.closed.Swap(true) {
		c.closeMu.Unlock()
		return nil
	}
	c.closeMu.Unlock()
	if c.stopSource != nil {
		c.stopSource()
	}
	c.cancel()
	close(c.stop)
	c.stopProbers()
	for _, n := range c.nodes {
		n.probe.interrupt() // a probe bounded by its socket's deadline, not c.ctx
	}
	c.wg.Wait()
	if c.ownSched {
		c.sched.close()
	}
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, n.close())
		// What the pools did not close: connections of Router.OpenDB's
		// *sql.DB, refused from now on anyway.
		n.closeConns()
	}
	return errors.Join(errs...)
}

// Row is the result of QueryRowContext, like *sql.Row.
type Row struct {
	rows *sql.Rows
	err  error
	tx   *Tx // the transaction the row was read in, if any
}

// Err returns the error, if any, of the query that produced the row.
func (r *Row) Err() error { return r.err }

// Scan copies the columns of the first row into dest, like sql.Row.Scan. It
// returns sql.ErrNoRows when the query returned no rows.
//
// As with sql.Row, dest must not hold a *sql.RawBytes: the bytes would
// point into a buffer that the driver reuses once the row is closed.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	for _, d := range dest {
		if _, ok := d.(*sql.RawBytes); ok {
			return errors.New("dbrouter: Row.Scan: *sql.RawBytes is not allowed (the bytes would outlive the row); scan into *[]byte")
		}
	}
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			if r.tx != nil {
				return r.tx.typed(OpTxQuery, false, err)
			}
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

// shutTo returns an error when node i is Down and the current picker routes
// no call to it (node.refuseConnect).
func (c *Cluster) shutTo(i int) error {
	p := c.pick.Load()
	if p == nil || i >= len(p.nodes) || p.nodes[i].state != StateDown ||
		slices.Contains(p.writes, i) || slices.Contains(p.reads, i) {
		return nil
	}
	return fmt.Errorf("%s is down: no new connection is opened to it", c.nodes[i].addr)
}
