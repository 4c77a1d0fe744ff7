package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// node is one server of a cluster. It has up to three connection pools,
// each created on first use so that configured but unused nodes cost no
// goroutine and no connection, and a probe connection (see probeConn):
//
//   - the write pool runs the router's writes and transactions;
//   - the read pool runs reads that the router may retry on another node
//     after an outcome-unknown failure; its sessions are read-only (SET
//     SESSION TRANSACTION READ ONLY at connect), so a "read" that writes —
//     SELECT of a function that inserts, NEXTVAL — is refused by the
//     server instead of being applied twice;
//   - the pinned pool serves Cluster.Writer and Cluster.Conn, whose
//     connections the caller uses directly: each of their statements passes
//     the cluster's failback fence and is refused once the node is no
//     longer the writer.
type node struct {
	addr  string
	pools [numPools]lazyPool
	// inner and poolCfg are what newPool opens the pools with (setPool).
	inner   driver.Connector
	poolCfg poolSettings
	// cluster and index place the node in its cluster, whose pinnedPass
	// gives a pinned-pool statement its pass; set by the cluster
	// (initHealth), nil for a node alone (tests).
	cluster *Cluster
	index   int
	// connector makes the connections of a Router's connector
	// (Router.OpenDB), outside the node's pools.
	connector *boundedConnector
	// readConnector is connector with read-only sessions, for
	// Router.OpenReadDB.
	readConnector *boundedConnector
	// bounded holds the probe's connector, connector and readConnector.
	bounded [3]boundedConnector
	probe   probeConn
	lazy    lazyConnector // the go-sql-driver connector (node.init); unused with newNodeWithConnector

	// The stall check (health.go, checkStalled): one at a time per node,
	// started at most once per stallAfter.
	checking  atomic.Bool
	lastCheck atomic.Int64 // UnixNano of the last check's start

	closeMu sync.Mutex // orders opening a pool against close
	closed  bool

	// conns tracks the node's open network connections so that they can
	// all be closed, idle and in use, when the node goes Down.
	connsMu sync.Mutex
	conns   map[*trackedConn]struct{}
	maxIdle int

	// routedBusy counts the calls in flight on the node through the
	// connections of a Router's connector (Router.OpenDB, OpenReadDB),
	// which no pool's statistics show: statements, and rows and
	// transactions until they end (routedConn.enter to exit). Drain waits
	// for them (Cluster.awaitIdle).
	routedBusy atomic.Int64
}

// poolKind names one of a node's pools.
type poolKind int

const (
	poolWrite  poolKind = iota // the router's writes and transactions
	poolRead                   // reads the router may retry: read-only sessions
	poolPinned                 // Cluster.Writer and Cluster.Conn
	numPools
)

type lazyPool struct {
	once sync.Once
	db   atomic.Pointer[sql.DB]
}

// pool returns the node's pool of kind k, opening it (without connecting)
// on first use. Once the node is closed, a pool not opened before is a
// closed one: its calls fail with "sql: database is closed", and nothing
// is left open behind the router's back.
func (n *node) pool(k poolKind) *sql.DB {
	p := &n.pools[k]
	if db := p.db.Load(); db != nil {
		return db
	}
	p.once.Do(func() {
		n.closeMu.Lock()
		defer n.closeMu.Unlock()
		db := n.newPool(k)
		if n.closed {
			db.Close()
		}
		p.db.Store(db)
	})
	return p.db.Load()
}

// db returns the write pool.
func (n *node) db() *sql.DB { return n.pool(poolWrite) }

// openPools returns the pools opened so far.
func (n *node) openPools() []*sql.DB {
	var dbs []*sql.DB
	for i := range n.pools {
		if db := n.pools[i].db.Load(); db != nil {
			dbs = append(dbs, db)
		}
	}
	return dbs
}

// close closes the probe connection and every pool opened so far; pools
// asked for later are born closed.
func (n *node) close() error {
	n.probe.close()
	n.closeMu.Lock()
	n.closed = true
	dbs := n.openPools()
	n.closeMu.Unlock()
	var errs []error
	for _, db := range dbs {
		errs = append(errs, db.Close())
	}
	return errors.Join(errs...)
}

// dial opens a TCP connection for the driver and tracks it.
func (n *node) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: conn, node: n}
	n.connsMu.Lock()
	if n.conns == nil {
		n.conns = make(map[*trackedConn]struct{})
	}
	n.conns[tc] = struct{}{}
	n.connsMu.Unlock()
	if ps := dialedSocket(ctx); ps != nil {
		// The probe connection's socket (probeConn.sock), which the
		// router may take over from the driver (probe_raw.go).
		ps.conn = tc
		ps.seen = &probeSocketConn{trackedConn: tc}
		return ps.seen, nil
	}
	return tc, nil
}

// warm keeps one idle connection in the write pool, so that when the node
// becomes the writer its first write costs no handshake. It never waits for
// a connection the application holds, and ignores failures: the probe has
// judged the node already.
func (n *node) warm(ctx context.Context) {
	db := n.db()
	st := db.Stats()
	if st.Idle > 0 || st.MaxOpenConnections > 0 && st.OpenConnections >= st.MaxOpenConnections {
		return
	}
	if conn, err := db.Conn(ctx); err == nil {
		conn.Close()
	}
}

// closeConns closes every open connection to the node: calls in flight on
// it fail at once (a write with an outcome-unknown error, a read moves to
// the next node) instead of waiting for their deadline, and no idle pooled
// connection is handed out again.
func (n *node) closeConns() {
	n.connsMu.Lock()
	conns := make([]*trackedConn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.connsMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	// Drop the idle pools' entries for the closed connections now.
	for _, db := range n.openPools() {
		db.SetMaxIdleConns(0)
		db.SetMaxIdleConns(n.maxIdle)
	}
}

// trackedConn is a net.Conn that leaves its node's set when closed.
type trackedConn struct {
	net.Conn
	node *node
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.node.connsMu.Lock()
		delete(c.node.conns, c)
		c.node.connsMu.Unlock()
	})
	return c.Conn.Close()
}

// SyscallConn exposes the socket so that go-sql-driver can check a pooled
// connection's liveness before using it (it skips the check otherwise, and
// a write on a dead connection would then look outcome-unknown).
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("dbrouter: connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// init makes n, a zero node, node i of cluster plan cp (newCluster
// builds a cluster's nodes in one allocation). It does no network I/O, and
// builds the node's go-sql-driver connector only when the node first
// connects (lazyConnector): a router of many clusters opens fast, and a
// node never used costs little. checkDriver, at Open, has made sure that
// the driver accepts the cluster's configuration.
func (n *node) init(cp *clusterPlan, i int, cc Settings, log *slog.Logger) {
	n.addr = cp.nodes[i].addr
	n.lazy = lazyConnector{plan: cp, index: i, node: n, log: log}
	n.setPool(&n.lazy, cc)
}

// checkDriver returns the error, if any, of go-sql-driver's connector for
// the first node of cp, as the node would meet it: the driver
// configuration is the cluster's, and the only part of it that is a
// node's own, its address, is valid.
func checkDriver(cp *clusterPlan) error {
	if _, err := mysql.NewConnector(cp.nodeDriver(0)); err != nil {
		return fmt.Errorf("dbrouter: node %s: %w", cp.nodes[0].addr, err)
	}
	return nil
}

// lazyConnector is a node's go-sql-driver connector, built on its first
// connection from the node's plan.
type lazyConnector struct {
	plan  *clusterPlan
	index int
	node  *node
	log   *slog.Logger

	once  sync.Once
	inner driver.Connector
	err   error
}

func (l *lazyConnector) connector() (driver.Connector, error) {
	l.once.Do(func() {
		mc := l.plan.nodeDriver(l.index)
		mc.DialFunc = l.node.dial
		l.node.probe.ownDeadlines.Store(mc.ReadTimeout == 0 && mc.WriteTimeout == 0)
		l.node.probe.takeOver.Store(rawProbeable(mc))
		mc.Logger = driverLogger{log: l.log, node: l.node.addr}
		if l.inner, l.err = mysql.NewConnector(mc); l.err != nil {
			l.err = fmt.Errorf("dbrouter: node %s: %w", l.node.addr, l.err)
		}
	})
	return l.inner, l.err
}

// Connect connects with the node's connector, built on first use.
func (l *lazyConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := l.connector()
	if err != nil {
		return nil, err
	}
	return c.Connect(ctx)
}

// Driver returns go-sql-driver's driver, as its connector does.
func (l *lazyConnector) Driver() driver.Driver { return &mysql.MySQLDriver{} }

// newNodeWithConnector builds a node on any driver.Connector; tests use it
// with a fake driver.
func newNodeWithConnector(addr string, inner driver.Connector, cc Settings) *node {
	n := &node{addr: addr}
	n.setPool(inner, cc)
	return n
}

func (n *node) setPool(inner driver.Connector, cc Settings) {
	n.maxIdle = cc.MaxIdleConns
	bc := &n.bounded
	*bc = [3]boundedConnector{
		{inner: inner, timeout: cc.ConnectTimeout},
		{inner: inner, timeout: cc.ConnectTimeout, node: n},
		{inner: inner, timeout: cc.ConnectTimeout, readOnly: true, node: n},
	}
	n.probe.connector, n.connector, n.readConnector = &bc[0], &bc[1], &bc[2]
	n.inner = inner
	n.poolCfg = poolSettings{connectTimeout: cc.ConnectTimeout, maxOpen: cc.MaxOpenConns, maxIdle: cc.MaxIdleConns,
		maxLifetime: cc.ConnMaxLifetime, maxIdleTime: cc.ConnMaxIdleTime}
}

// poolSettings are the settings a node's pools are opened with.
type poolSettings struct {
	connectTimeout           time.Duration
	maxOpen, maxIdle         int
	maxLifetime, maxIdleTime time.Duration
}

// newPool opens (without connecting) the node's pool of a kind.
func (n *node) newPool(kind poolKind) *sql.DB {
	cc := n.poolCfg
	bc := &boundedConnector{inner: n.inner, timeout: cc.connectTimeout, refuse: n.refuseConnect, node: n}
	switch kind {
	case poolRead:
		bc.readOnly = true
	case poolPinned:
		if c, i := n.cluster, n.index; c != nil {
			bc.guard = func(ctx context.Context) (*pass, error) { return c.pinnedPass(ctx, i) }
			bc.typed = func(err error) error {
				return &notSentError{cluster: c.name, op: OpConnect, node: n.addr, err: err}
			}
		}
	}
	db := sql.OpenDB(bc)
	db.SetMaxOpenConns(cc.maxOpen)
	db.SetMaxIdleConns(cc.maxIdle)
	db.SetConnMaxLifetime(cc.maxLifetime)
	db.SetConnMaxIdleTime(cc.maxIdleTime)
	return db
}

// boundedConnector bounds the whole connection setup (dial, TLS, MySQL
// handshake) by a timeout, and marks every failure as a connect error: the
// caller's statement was not sent. database/sql also opens connections from
// its own goroutine with no deadline at all, so the bound must live here.
//
// It also wraps each connection in a nodeConn (with guard, for the pinned
// pool) and, for the read pool, makes the session read-only.
type boundedConnector struct {
	inner    driver.Connector
	timeout  time.Duration
	readOnly bool
	guard    func(ctx context.Context) (*pass, error)
	refuse   func() error // non-nil error: fail at once, nothing sent
	// typed, when set, types a failed connect for the caller: the pinned
	// pool's statements reach the caller from database/sql as they are.
	typed func(err error) error
	node  *node // the connections' node, for their stall watch (nil: none, the probe's)
}

// refuseConnect returns an error when the node is Down and no call is
// routed to it: the calls database/sql still queues for a connection to
// it then fail at once, not sent, and move to the next node, instead of
// each waiting out connect_timeout on a node that answers nothing
// (database/sql opens one new connection per waiting call, max_open_conns
// at a time). A decided writer this router sees Down (a WriterSource) is
// still routed to and still connected to.
func (n *node) refuseConnect() error {
	if n.cluster == nil {
		return nil
	}
	return n.cluster.shutTo(n.index)
}

// setSessionReadOnly makes every later transaction of a session read-only,
// autocommitted statements included. MySQL and MariaDB both know it.
const setSessionReadOnly = "SET SESSION TRANSACTION READ ONLY"

func (c *boundedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.connect(ctx)
	if err != nil && c.typed != nil {
		return nil, c.typed(err)
	}
	return conn, err
}

func (c *boundedConnector) connect(ctx context.Context) (driver.Conn, error) {
	if c.refuse != nil {
		if err := c.refuse(); err != nil {
			return nil, &connectError{err: err}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.inner.Connect(cctx)
	if err != nil {
		if ctx.Err() == nil && cctx.Err() != nil {
			err = fmt.Errorf("connection setup (dial and handshake) took longer than connect_timeout %v: %w", c.timeout, err)
		}
		return nil, &connectError{err: err}
	}
	if c.readOnly {
		err := errors.New("dbrouter: the driver cannot run statements without preparing them")
		if ex, ok := conn.(driver.ExecerContext); ok {
			_, err = ex.ExecContext(cctx, setSessionReadOnly, nil)
		}
		if err != nil {
			conn.Close()
			return nil, &connectError{err: fmt.Errorf("making the session read-only: %w", err)}
		}
	}
	return &nodeConn{Conn: conn, guard: c.guard, node: c.node, read: c.readOnly}, nil
}

func (c *boundedConnector) Driver() driver.Driver { return c.inner.Driver() }

// connectError marks a failure to establish a connection.
type connectError struct{ err error }

func (e *connectError) Error() string { return "connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// driverLogger sends go-sql-driver's log lines to slog at debug level,
// with the node's address as attribute "node".
type driverLogger struct {
	log  *slog.Logger
	node string
}

func (l driverLogger) Print(v ...any) {
	l.log.With("node", l.node).Debug("mysql driver: " + fmt.Sprint(v...))
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
