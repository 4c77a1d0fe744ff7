package fleet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/go-sql-driver/mysql"
)

// SQLHooks returns the Demote, Promote and CatchUp hooks of a fleet
// switchover (SwitchoverOptions) for MariaDB and MySQL, reaching each node
// with the credentials, TLS and parameters that cfg gives its cluster:
//
//   - Demote runs SET GLOBAL read_only = ON on the old writer. The server
//     makes it wait for the tables locked there (LOCK TABLES) and the
//     writing statements running there to end (on MariaDB 10.11 an idle
//     transaction with uncommitted writes does not hold it), so a long
//     one makes the switchover wait, up to DemoteTimeout, then refused.
//     The wait is bounded on the server too: lock_wait_timeout (the
//     seconds left, rounded up), and when DemoteTimeout ends (or the
//     statement fails otherwise than by the server's own error, such as
//     the driver's read_timeout) the
//     connection is killed (KILL CONNECTION) and the hook returns only
//     once the server no longer lists it, so that a refused Demote cannot
//     take effect later. The account needs the SUPER or READ_ONLY ADMIN
//     privilege.
//   - Promote runs SET GLOBAL read_only = OFF.
//   - CatchUp reads the old writer's position (@@gtid_current_pos on
//     MariaDB, @@gtid_executed on MySQL), then waits on the target with
//     MASTER_GTID_WAIT (MariaDB) or WAIT_FOR_EXECUTED_GTID_SET (MySQL) until
//     it holds it, within its ctx.
//
// Each call opens a connection to the one node it needs and closes it. A
// node must be one of the cluster's Nodes, by its spelling there or its
// normalised address (a node configured as "db1" is "db1:3306", as the
// routers and the fleet's decisions name it). SQLHooks copies cfg; it
// returns an error when cfg is nil. The hooks are safe for concurrent use.
func SQLHooks(cfg *dbrouter.Config) (*SwitchoverOptions, error) {
	if cfg == nil {
		return nil, errors.New("fleet: SQLHooks: nil config")
	}
	h := &sqlHooks{cfg: cfg.Clone()}
	return &SwitchoverOptions{
		Demote: func(ctx context.Context, cluster, addr string) error {
			return h.exec(ctx, cluster, addr, "SET GLOBAL read_only = ON")
		},
		Promote: func(ctx context.Context, cluster, addr string) error {
			return h.exec(ctx, cluster, addr, "SET GLOBAL read_only = OFF")
		},
		CatchUp: h.catchUp,
	}, nil
}

// sqlHooks reaches single nodes of a configuration's clusters.
type sqlHooks struct{ cfg *dbrouter.Config }

// node opens a router on one node of cluster, without probes: its
// cluster's Writer is that node's pool, with the cluster's credentials,
// TLS and parameters. The caller closes the router.
func (h *sqlHooks) node(cluster, addr string) (*dbrouter.Router, *dbrouter.Cluster, error) {
	cc, ok := h.cfg.Clusters[cluster]
	if !ok {
		return nil, nil, fmt.Errorf("cluster %q is not in the configuration", cluster)
	}
	// The routers (so the decisions and addr) name a node by its
	// normalised address: "db1" is "db1:3306".
	want := sameNodeAddr(addr)
	i := slices.IndexFunc(cc.Nodes, func(n string) bool { return n == addr || sameNodeAddr(n) == want })
	if i < 0 {
		return nil, nil, fmt.Errorf("node %q is not a node of cluster %q in the configuration", addr, cluster)
	}
	addr = cc.Nodes[i]
	one := h.cfg.Clone()
	cc = one.Clusters[cluster]
	cc.Nodes = []string{addr}
	cc.Health.Disabled = true
	cc.FailoverWait = 0
	// exec's KILL CONNECTION needs a second connection while the first is
	// held: the application's max_open_conns (1) must not make it wait.
	one.Defaults.MaxOpenConns, cc.MaxOpenConns = 0, 0
	one.Clusters = map[string]dbrouter.ClusterConfig{cluster: cc}
	one.ShardMaps = nil
	one.WriterSource, one.Observer, one.OnEvent = nil, nil, nil
	one.Logger = slog.New(slog.DiscardHandler)
	r, err := dbrouter.Open(one)
	if err != nil {
		return nil, nil, err
	}
	c, err := r.Cluster(cluster)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, c, nil
}

// exec runs query on node addr of cluster.
func (h *sqlHooks) exec(ctx context.Context, cluster, addr, query string) error {
	r, c, err := h.node(cluster, addr)
	if err != nil {
		return err
	}
	defer r.Close()
	db := c.Writer()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", query, addr, err)
	}
	defer conn.Close()
	// SET GLOBAL read_only = ON waits for the tables locked and the
	// writing statements running on the node. Ending the call (ctx)
	// closes the client's connection but not the server's wait: the
	// statement would still take effect once they end, after the
	// switchover was refused and Promote had run, leaving the writer
	// read-only (TestReview9DemoteTimeoutKillsPendingReadOnly). The
	// server's own bound (lock_wait_timeout) and, when ctx ends, killing
	// the connection stop it. The same holds whenever the error is not
	// the server's own (which ends the statement): the driver's read
	// timeout (the cluster's read_timeout shorter than DemoteTimeout) or
	// a connection lost leave the statement waiting on the server too.
	var id int64
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		return fmt.Errorf("%s on %s: %w", query, addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		secs := max(int64(math.Ceil(time.Until(dl).Seconds())), 1)
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
			return fmt.Errorf("%s on %s: %w", query, addr, err)
		}
	}
	if _, err := conn.ExecContext(ctx, query); err != nil {
		var me *mysql.MySQLError
		if ctx.Err() != nil || !errors.As(err, &me) {
			if kerr := killConn(context.WithoutCancel(ctx), db, id); kerr != nil {
				return fmt.Errorf("%s on %s: %w (and %v: the statement may still take effect)", query, addr, err, kerr)
			}
		}
		return fmt.Errorf("%s on %s: %w", query, addr, err)
	}
	return nil
}

// killBound bounds killConn.
const killBound = 2 * time.Second

// killConn ends the server's connection id, whose client gave up on a
// statement, and waits, within killBound, until the server no longer
// lists it: only then can the statement no longer take effect. KILL
// CONNECTION, not KILL QUERY: the statement may not have started when the
// client gave up (sent, not yet read by the server), and KILL QUERY on an
// idle connection does nothing. A connection the server has already ended
// ("Unknown thread id") is what is wanted.
func killConn(ctx context.Context, db *sql.DB, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, killBound)
	defer cancel()
	var me *mysql.MySQLError
	if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil && !(errors.As(err, &me) && me.Number == errUnknownThread) {
		return fmt.Errorf("KILL CONNECTION %d failed: %w", id, err)
	}
	for {
		var n int
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n)
		switch {
		case err != nil:
			return fmt.Errorf("connection %d killed, but not seen gone: %w", id, err)
		case n == 0:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("connection %d killed, but still listed by the server after %v", id, killBound)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errUnknownThread is the server's error number for a KILL of a
// connection it does not have (ER_NO_SUCH_THREAD).
const errUnknownThread = 1094

// catchUp waits, within ctx, until node to holds node from's position.
func (h *sqlHooks) catchUp(ctx context.Context, cluster, from, to string) error {
	rf, cf, err := h.node(cluster, from)
	if err != nil {
		return err
	}
	defer rf.Close()
	var version string
	if err := cf.Writer().QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return fmt.Errorf("reading %s's version: %w", from, err)
	}
	q, wait := "SELECT @@global.gtid_current_pos", "SELECT MASTER_GTID_WAIT(?, ?)"
	if !strings.Contains(strings.ToLower(version), "mariadb") {
		q, wait = "SELECT @@global.gtid_executed", "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"
	}
	var pos string
	if err := cf.Writer().QueryRowContext(ctx, q).Scan(&pos); err != nil {
		return fmt.Errorf("reading %s's position: %w", from, err)
	}
	rt, ct, err := h.node(cluster, to)
	if err != nil {
		return err
	}
	defer rt.Close()
	// The server's own timeout ends the wait just before ctx does, so
	// that a timeout is told apart from a connection lost.
	secs := 3600.0
	if dl, ok := ctx.Deadline(); ok {
		secs = max(time.Until(dl).Seconds()-0.1, 0.001)
	}
	var res int
	if err := ct.Writer().QueryRowContext(ctx, wait, pos, secs).Scan(&res); err != nil {
		return fmt.Errorf("waiting for %s to reach %s's position %s: %w", to, from, pos, err)
	}
	if res != 0 {
		return fmt.Errorf("%s has not reached %s's position %s in time (%s returned %d)", to, from, pos, strings.TrimPrefix(wait, "SELECT "), res)
	}
	return nil
}

// sameNodeAddr is s as dbrouter names a node: host:port, port 3306 when
// omitted, the port without leading zeros, IPv6 in brackets. What it cannot
// parse it returns unchanged.
func sameNodeAddr(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, strconv.Itoa(dbrouter.DefaultPort)
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			host = s[1 : len(s)-1]
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil || host == "" {
		return s
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}
