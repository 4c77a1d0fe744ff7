package ringtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Ring is one cluster: N servers in circular replication, node i replicating
// from node (i-1+N)%N. Its methods are safe for concurrent use; operations
// on the same node are serialised. Methods without an error result panic if
// the node index is out of range.
type Ring struct {
	name    string
	h       *Harness
	servers []node
}

func (r *Ring) node(i int) node {
	if i < 0 || i >= len(r.servers) {
		panic(fmt.Sprintf("ringtest: %s: node %d out of range [0,%d)", r.name, i, len(r.servers)))
	}
	return r.servers[i]
}

func (r *Ring) nodeErr(i int) (node, error) {
	if i < 0 || i >= len(r.servers) {
		return nil, fmt.Errorf("ringtest: %s: node %d out of range [0,%d)", r.name, i, len(r.servers))
	}
	return r.servers[i], nil
}

// Name returns the ring's name: "ring0", "ring1", ...
func (r *Ring) Name() string { return r.name }

// Len returns the number of servers in the ring.
func (r *Ring) Len() int { return len(r.servers) }

// Addr returns node i's TCP address for callers, "127.0.0.1:PORT": the
// proxy's when Options.Proxy is set, otherwise the server's own. The port
// stays the same across Restart.
func (r *Ring) Addr(i int) string { return r.node(i).addr() }

// ServerAddr returns node i's own TCP address, bypassing any proxy. It is
// the same as Addr when Options.Proxy is not set.
func (r *Ring) ServerAddr(i int) string { return r.node(i).serverAddr() }

// Cut blackholes the path from callers of Addr to node i: connections
// through the proxy, open or new, hang (nothing is refused or closed) until
// Heal. The node itself keeps running and replicating with its peers, and
// AdminDB still reaches it. Cut needs Options.Proxy; without it, it returns
// an error. Cutting a cut node is a no-op.
func (r *Ring) Cut(i int) error { return r.setCut(i, true) }

// Heal restores the path that Cut blackholed; data held during the cut is
// delivered then. Healing a node that is not cut is a no-op.
func (r *Ring) Heal(i int) error { return r.setCut(i, false) }

// IsCut reports whether node i's path is cut.
func (r *Ring) IsCut(i int) bool {
	p := r.node(i).cutProxy()
	return p != nil && p.isCut()
}

func (r *Ring) setCut(i int, cut bool) error {
	s, err := r.nodeErr(i)
	if err != nil {
		return err
	}
	p := s.cutProxy()
	if p == nil {
		return fmt.Errorf("ringtest: %s: Cut/Heal need Options.Proxy", s.label())
	}
	p.setCut(cut)
	if cut {
		r.h.opts.Logf("ringtest: %s: cut at proxy %s", s.label(), p.addr())
	} else {
		r.h.opts.Logf("ringtest: %s: healed at proxy %s", s.label(), p.addr())
	}
	return nil
}

// Partition cuts node i off from the rest of its ring while callers still
// reach it: the one-sided partition of split-brain. Its replication links
// in both directions break (peers notice within slave_net_timeout, 5 s, and
// keep retrying), but the router, Addr and AdminDB reach it as before, so a
// write there stays on it until Rejoin. It needs the Docker backend, where
// it disconnects the node's container from the ring's replication network
// (its port is published from the other network); on the native backend it
// returns an error. Partitioning a partitioned node is a no-op.
func (r *Ring) Partition(i int) error { return r.setPartitioned(i, true) }

// Rejoin reconnects node i after Partition; replication in both directions
// resumes within a few seconds (MASTER_CONNECT_RETRY=1, slave_net_timeout
// 5 s), which WaitConverged can wait for. Rejoining a node that is not
// partitioned is a no-op.
func (r *Ring) Rejoin(i int) error { return r.setPartitioned(i, false) }

// IsPartitioned reports whether node i is cut off by Partition.
func (r *Ring) IsPartitioned(i int) bool {
	p, ok := r.node(i).(partitioner)
	return ok && p.isPartitioned()
}

func (r *Ring) setPartitioned(i int, part bool) error {
	s, err := r.nodeErr(i)
	if err != nil {
		return err
	}
	p, ok := s.(partitioner)
	if !ok {
		return fmt.Errorf("ringtest: %s: Partition/Rejoin need the %s backend (this harness runs on %s)",
			s.label(), BackendDocker, r.h.opts.Backend)
	}
	if err := p.setPartitioned(part); err != nil {
		return err
	}
	if part {
		r.h.opts.Logf("ringtest: %s: partitioned from its ring", s.label())
	} else {
		r.h.opts.Logf("ringtest: %s: rejoined its ring", s.label())
	}
	return nil
}

// Addrs returns the TCP addresses of all nodes in index order.
func (r *Ring) Addrs() []string {
	a := make([]string, len(r.servers))
	for i, s := range r.servers {
		a[i] = s.addr()
	}
	return a
}

// DSN returns a go-sql-driver/mysql DSN for the application user over TCP to
// node i with the harness database selected, e.g.
// "app:app-secret@tcp(127.0.0.1:PORT)/ringtest".
func (r *Ring) DSN(i int) string {
	cfg := mysql.NewConfig()
	cfg.User = r.h.opts.User
	cfg.Passwd = r.h.opts.Password
	cfg.Net = "tcp"
	cfg.Addr = r.node(i).addr()
	cfg.DBName = r.h.opts.Database
	return cfg.FormatDSN()
}

// AdminDB returns a connection pool with root privileges on node i: over
// its unix socket on the native backend, over its mapped TCP port (as
// root@'%') on the Docker backend. It is opened lazily, shared by all callers
// and closed by Harness.Close; do not close it yourself.
func (r *Ring) AdminDB(i int) *sql.DB { return r.node(i).adminDB() }

// PID returns the process id of node i's current (or last) server, or 0 if
// it never started. On the native backend it is the mariadbd process. On
// the Docker backend it is the pid of the container's main process (the
// mariadbd the container's shell execs) as the Docker engine reports it, in
// the engine host's PID namespace: it is only meaningful to processes that
// share that namespace, and it is 0 after Kill.
func (r *Ring) PID(i int) int { return r.node(i).pid() }

// Running reports whether node i's server is alive (its process on the
// native backend, its container on Docker). A frozen node counts as
// running.
func (r *Ring) Running(i int) bool { return r.node(i).alive() }

// Frozen reports whether node i is alive and stopped by Freeze.
func (r *Ring) Frozen(i int) bool { return r.node(i).isFrozen() }

// Kill kills node i at once and waits until it is gone: SIGKILL to the
// process on the native backend, a SIGKILL container kill on Docker. It is a
// no-op if the node is not running; a frozen node is killed too.
func (r *Ring) Kill(i int) error {
	s, err := r.nodeErr(i)
	if err != nil {
		return err
	}
	killed, err := s.killHard()
	if err != nil {
		return err
	}
	if killed {
		r.h.opts.Logf("ringtest: %s: killed", s.label())
	}
	return nil
}

// Freeze stops node i and waits until all its threads have stopped: SIGSTOP
// on the native backend, a container pause (cgroup freezer) on Docker. Its
// connections stay open but nothing is answered until Thaw; replicas of it
// notice within a few seconds (heartbeat 1s, slave_net_timeout 5s) and start
// reconnecting.
func (r *Ring) Freeze(i int) error {
	s, err := r.nodeErr(i)
	if err != nil {
		return err
	}
	if err := s.freeze(); err != nil {
		return err
	}
	r.h.opts.Logf("ringtest: %s: frozen", s.label())
	return nil
}

// Thaw resumes node i after Freeze (SIGCONT, or a container unpause) and
// waits until its threads run again.
func (r *Ring) Thaw(i int) error {
	s, err := r.nodeErr(i)
	if err != nil {
		return err
	}
	if err := s.thaw(); err != nil {
		return err
	}
	r.h.opts.Logf("ringtest: %s: thawed", s.label())
	return nil
}

// Restart starts node i again with the same data and address, killing it
// first if it is running (or frozen), and waits until it answers. On the
// native backend that is the same datadir and port; on Docker the same
// container, volume and mapped port. It then waits until the replication
// links touching the node are up again: the node's own slave (restarted by
// the server from its master.info) if its upstream is live, and the
// downstream peer's slave, which reconnects on its own thanks to
// MASTER_CONNECT_RETRY=1; a peer slave that stopped instead of retrying is
// started again with START SLAVE.
func (r *Ring) Restart(i int) error {
	s, err := r.nodeErr(i)
	if err != nil {
		return err
	}
	ctx := context.Background()
	t0 := time.Now()
	if err := s.restart(ctx); err != nil {
		return err
	}
	if len(r.servers) > 1 {
		if r.servers[r.upstream(i)].live() {
			if err := r.waitLink(ctx, i, true); err != nil {
				return err
			}
		}
		if d := r.downstream(i); r.servers[d].live() {
			if err := r.waitLink(ctx, d, true); err != nil {
				return err
			}
		}
	}
	r.h.opts.Logf("ringtest: %s: restarted and reconnected in %v", s.label(), time.Since(t0).Round(time.Millisecond))
	return nil
}

// SetReadOnly sets the global read_only flag on node i. Users without the
// READ_ONLY ADMIN privilege (the application user) then get error 1290 on
// writes; replication keeps applying changes. Like any SET GLOBAL, it does
// not survive Restart. Open transactions block SET GLOBAL read_only = 1
// while their own next statements wait for it; after 1 s (lock_wait_timeout)
// SetReadOnly kills the connections of the application user, as an
// operator demoting a busy master would, and tries again: callers in a
// transaction then see their connection lost.
func (r *Ring) SetReadOnly(i int, ro bool) error {
	s, err := r.nodeErr(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.startTimeout())
	defer cancel()
	v := 0
	if ro {
		v = 1
	}
	conn, err := s.adminDB().Conn(ctx)
	if err != nil {
		return fmt.Errorf("ringtest: %s: set read_only=%d: %w", s.label(), v, err)
	}
	defer conn.Close()
	// SET GLOBAL read_only = 1 waits for open transactions to end, and
	// their next statements wait for it: a deadlock until a timeout. Do
	// what an operator demoting a busy master does: wait a little, then
	// kill the application user's connections and try again.
	if _, err := conn.ExecContext(ctx, "SET SESSION lock_wait_timeout = 1"); err != nil {
		return fmt.Errorf("ringtest: %s: set read_only=%d: %w", s.label(), v, err)
	}
	for attempt := 1; ; attempt++ {
		_, err = conn.ExecContext(ctx, fmt.Sprintf("SET GLOBAL read_only = %d", v))
		var me *mysql.MySQLError
		if err == nil || attempt == 5 || !errors.As(err, &me) || me.Number != 1205 {
			break
		}
		killed, kerr := killUserConns(ctx, conn, r.h.opts.User)
		if kerr != nil {
			return fmt.Errorf("ringtest: %s: set read_only=%d: %w", s.label(), v, kerr)
		}
		r.h.opts.Logf("ringtest: %s: read_only=%d waited on open transactions; killed %d connection(s) of %s", s.label(), v, killed, r.h.opts.User)
	}
	if err != nil {
		return fmt.Errorf("ringtest: %s: set read_only=%d: %w", s.label(), v, err)
	}
	return nil
}

// killUserConns kills every connection of user on conn's server.
func killUserConns(ctx context.Context, conn *sql.Conn, user string) (int, error) {
	rows, err := conn.QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE user = ?", user)
	if err != nil {
		return 0, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err == nil {
			n++
		}
	}
	return n, nil
}

// GTIDPos returns node i's @@gtid_current_pos, e.g. "1-1-5,2-2-3" (the
// empty string before any transaction).
func (r *Ring) GTIDPos(ctx context.Context, i int) (string, error) {
	s, err := r.nodeErr(i)
	if err != nil {
		return "", err
	}
	var pos string
	if err := s.adminDB().QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_current_pos").Scan(&pos); err != nil {
		return "", fmt.Errorf("ringtest: %s: gtid_current_pos: %w", s.label(), err)
	}
	return pos, nil
}

// WaitConverged polls until every running, non-frozen node reports the same
// @@gtid_current_pos (compared as sets of domain-server-seq) and each such
// node's slave threads run (the IO thread is only required when the node's
// upstream is itself running and not frozen). When ctx ends first it returns
// an error listing each node's position and replication state.
func (r *Ring) WaitConverged(ctx context.Context) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last string
	for {
		report, ok := r.convergeState(ctx)
		if ok {
			return nil
		}
		// A poll cut short by ctx reports only "deadline exceeded"; keep
		// the last complete one for the error.
		if ctx.Err() == nil || last == "" {
			last = report
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ringtest: %s: not converged: %w\n%s", r.name, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// convergeState checks convergence once, returning a per-node report.
func (r *Ring) convergeState(ctx context.Context) (string, bool) {
	var (
		b      strings.Builder
		ok     = true
		first  []string
		haveFt bool
	)
	for i, s := range r.servers {
		fmt.Fprintf(&b, "  node %d %s: ", i, s.addr())
		if !s.alive() {
			b.WriteString("not running\n")
			continue
		}
		if s.isFrozen() {
			b.WriteString("frozen\n")
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		pos, err := r.GTIDPos(qctx, i)
		var st *slaveStatus
		if err == nil && len(r.servers) > 1 {
			st, err = slaveStatusOf(qctx, s)
		}
		cancel()
		if err != nil {
			ok = false
			fmt.Fprintf(&b, "error: %v\n", err)
			continue
		}
		fmt.Fprintf(&b, "gtid_current_pos=%q", pos)
		if st != nil {
			fmt.Fprintf(&b, " %s", st)
			upLive := r.servers[r.upstream(i)].live()
			if st.SQL != "Yes" || (upLive && st.IO != "Yes") {
				ok = false
			}
		}
		b.WriteByte('\n')
		set := gtidSet(pos)
		if !haveFt {
			first, haveFt = set, true
		} else if !slices.Equal(first, set) {
			ok = false
		}
	}
	return strings.TrimRight(b.String(), "\n"), ok
}

// gtidSet splits a GTID position into its sorted, de-duplicated elements.
func gtidSet(pos string) []string {
	var set []string
	for _, g := range strings.Split(pos, ",") {
		if g = strings.TrimSpace(g); g != "" {
			set = append(set, g)
		}
	}
	slices.Sort(set)
	return slices.Compact(set)
}
