package fleet

import (
	"context"
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
)

// SQLHooks returns the Demote, Promote and CatchUp hooks of a fleet
// switchover (SwitchoverOptions) for MariaDB and MySQL, reaching each node
// with the credentials, TLS and parameters that cfg gives its cluster:
//
//   - Demote runs SET GLOBAL read_only = ON on the old writer. The server
//     makes it wait for the transactions open there to end (and for
//     tables locked by them), so a long transaction makes the switchover
//     wait, up to DemoteTimeout, then refused. The account needs the SUPER
//     or READ_ONLY ADMIN privilege.
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
	// SET GLOBAL read_only = ON waits for the transactions open on the
	// node. Ending the call (ctx) closes the client's connection but not
	// the server's wait: the statement would still take effect once they
	// end, after the switchover was refused and Promote had run, leaving
	// the writer read-only. The server's own bound (lock_wait_timeout) and
	// a KILL QUERY when ctx ends stop it.
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
		if ctx.Err() != nil {
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_, kerr := db.ExecContext(kctx, fmt.Sprintf("KILL QUERY %d", id))
			cancel()
			if kerr != nil {
				return fmt.Errorf("%s on %s: %w (and KILL QUERY %d failed, the statement may still take effect: %v)", query, addr, err, id, kerr)
			}
		}
		return fmt.Errorf("%s on %s: %w", query, addr, err)
	}
	return nil
}

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
