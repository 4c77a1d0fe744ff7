package ringtest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"time"
)

// Replication account created on every node (never binlogged).
const (
	replUser     = "repl"
	replPassword = "repl-secret"
)

// bootstrap creates the replication and application users and the database
// without binlogging them (every node gets its own copy), then resets the
// binlog so that each ring starts from an empty GTID position. Native
// callers hold s.op.
func bootstrap(ctx context.Context, s node, database, user, password string) error {
	db := s.adminDB()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ringtest: %s: bootstrap: %w", s.label(), err)
	}
	// The session has sql_log_bin=0: never hand it back to the pool.
	defer func() {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
	}()
	app := quoteString(user) + "@'%'"
	repl := quoteString(replUser) + "@'%'"
	stmts := []string{
		"SET SESSION sql_log_bin = 0",
		"CREATE USER IF NOT EXISTS " + repl + " IDENTIFIED BY " + quoteString(replPassword),
		"GRANT REPLICATION SLAVE ON *.* TO " + repl,
		"CREATE USER IF NOT EXISTS " + app + " IDENTIFIED BY " + quoteString(password),
		// Only database-level privileges, so that read_only refuses the
		// application user; the monitor privileges let it read replication
		// status (SHOW SLAVE STATUS, SHOW BINLOG STATUS / @@gtid_* vars).
		"GRANT ALL PRIVILEGES ON " + quoteIdent(database) + ".* TO " + app,
		"GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO " + app,
		"CREATE DATABASE IF NOT EXISTS " + quoteIdent(database),
		"RESET MASTER",
		"SET GLOBAL gtid_slave_pos = ''",
	}
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("ringtest: %s: bootstrap: %s: %w", s.label(), redact(q), err)
		}
	}
	return nil
}

// wire points every node of the ring at its upstream neighbour and waits
// until all replication threads run. A single-node ring has no replication.
func (r *Ring) wire(ctx context.Context) error {
	n := len(r.servers)
	if n < 2 {
		return nil
	}
	for i, s := range r.servers {
		host, port := r.servers[r.upstream(i)].replSource()
		q := fmt.Sprintf("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%d, "+
			"MASTER_USER=%s, MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, "+
			"MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
			quoteString(host), port, quoteString(replUser), quoteString(replPassword))
		db := s.adminDB()
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("ringtest: %s: CHANGE MASTER to node %d: %w", s.label(), r.upstream(i), err)
		}
		if _, err := db.ExecContext(ctx, "START SLAVE"); err != nil {
			return fmt.Errorf("ringtest: %s: START SLAVE: %w", s.label(), err)
		}
	}
	for i := range r.servers {
		if err := r.waitLink(ctx, i, false); err != nil {
			return err
		}
	}
	return nil
}

// wireRings wires every ring of h concurrently and returns their errors.
func (h *Harness) wireRings(ctx context.Context) error {
	return concurrently(h.rings, func(r *Ring) error { return r.wire(ctx) })
}

// upstream is the index of the node that node i replicates from.
func (r *Ring) upstream(i int) int { return (i - 1 + len(r.servers)) % len(r.servers) }

// downstream is the index of the node that replicates from node i.
func (r *Ring) downstream(i int) int { return (i + 1) % len(r.servers) }

// waitLink waits until node i's slave IO and SQL threads both run, bounded
// by the start timeout. With restart set, a slave that stopped (rather than
// one still retrying its connection) is started again with START SLAVE.
func (r *Ring) waitLink(ctx context.Context, i int, restart bool) error {
	s := r.servers[i]
	ctx, cancel := context.WithTimeout(ctx, s.startTimeout())
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var (
		st        *slaveStatus
		err       error
		lastStart time.Time
	)
	for {
		st, err = slaveStatusOf(ctx, s)
		if err == nil && st.running() {
			return nil
		}
		// "Connecting" means the IO thread is retrying by itself; "No"
		// means a thread stopped and will stay stopped.
		if err == nil && restart && (st.IO == "No" || st.SQL == "No") && time.Since(lastStart) > time.Second {
			lastStart = time.Now()
			r.h.opts.Logf("ringtest: %s: slave stopped (%s); issuing START SLAVE", s.label(), st)
			if _, err = s.adminDB().ExecContext(ctx, "START SLAVE"); err != nil {
				err = fmt.Errorf("START SLAVE: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("ringtest: %s: replication from node %d not running: %w", s.label(), r.upstream(i), err)
			}
			return fmt.Errorf("ringtest: %s: replication from node %d not running: %s", s.label(), r.upstream(i), st)
		case <-tick.C:
		}
	}
}

// slaveStatus is the part of SHOW SLAVE STATUS the harness looks at.
type slaveStatus struct {
	IO, SQL           string // Slave_IO_Running, Slave_SQL_Running
	IOErrno, SQLErrno string
	IOError, SQLError string
	MasterPort        string
}

func (st *slaveStatus) running() bool { return st.IO == "Yes" && st.SQL == "Yes" }

func (st *slaveStatus) String() string {
	s := fmt.Sprintf("io=%s sql=%s master_port=%s", st.IO, st.SQL, st.MasterPort)
	if st.IOErrno != "" && st.IOErrno != "0" {
		s += fmt.Sprintf(" io_error=%s %q", st.IOErrno, st.IOError)
	}
	if st.SQLErrno != "" && st.SQLErrno != "0" {
		s += fmt.Sprintf(" sql_error=%s %q", st.SQLErrno, st.SQLError)
	}
	return s
}

// slaveStatusOf runs SHOW SLAVE STATUS on s; it fails when the node is not
// a replica.
func slaveStatusOf(ctx context.Context, s node) (*slaveStatus, error) {
	rows, err := s.adminDB().QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("not configured as a replica")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	st := &slaveStatus{}
	fields := map[string]*string{
		"Slave_IO_Running":  &st.IO,
		"Slave_SQL_Running": &st.SQL,
		"Last_IO_Errno":     &st.IOErrno,
		"Last_IO_Error":     &st.IOError,
		"Last_SQL_Errno":    &st.SQLErrno,
		"Last_SQL_Error":    &st.SQLError,
		"Master_Port":       &st.MasterPort,
	}
	for i, c := range cols {
		if f, ok := fields[c]; ok {
			*f = vals[i].String
		}
	}
	return st, rows.Err()
}

// quoteString returns s as a single-quoted SQL string literal.
func quoteString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)
	return "'" + r.Replace(s) + "'"
}

// quoteIdent returns s as a backquoted SQL identifier.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// redact hides passwords in statements quoted in errors.
func redact(q string) string {
	if i := strings.Index(q, " IDENTIFIED BY "); i >= 0 {
		return q[:i] + " IDENTIFIED BY '***'"
	}
	return q
}
