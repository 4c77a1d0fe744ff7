package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// ErrorClass is how a failed attempt on one node is treated.
type ErrorClass int

// The error classes (docs/design.md §2, "Error classes").
const (
	// ClassNotSent: the statement provably never reached the server (dial
	// refused or timed out, handshake failed, pooled connection found dead
	// before writing). Retried on the next node.
	ClassNotSent ErrorClass = iota + 1

	// ClassOutcomeUnknown: the connection broke after the statement may
	// have been written. Writes are not retried; reads are.
	ClassOutcomeUnknown

	// ClassServerError: the server answered with an error (duplicate key,
	// syntax, ...). Returned to the caller as is.
	ClassServerError

	// ClassReadOnly: the server refused a write because it is read-only
	// (MySQL error 1290 naming the read-only option, or 1836). Nothing was
	// applied; the node loses the writer role and the next node is tried.
	ClassReadOnly
)

// String names the class.
func (c ErrorClass) String() string {
	switch c {
	case ClassNotSent:
		return "not sent"
	case ClassOutcomeUnknown:
		return "outcome unknown"
	case ClassServerError:
		return "server error"
	case ClassReadOnly:
		return "read-only"
	}
	return "unknown class"
}

// MySQL error numbers the router treats specially.
const (
	// ER_OPTION_PREVENTS_STATEMENT: "running with the --read-only option"
	// (or --super-read-only), but also --secure-file-priv and others.
	errOptionPreventsStatement = 1290
	errReadOnlyMode            = 1836 // ER_READ_ONLY_MODE
	// ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: a statement that writes,
	// refused in a read-only session before it changed anything.
	errReadOnlyTransaction = 1792

	// Refusals at connection time from a server that is up.
	errTooManyConnections     = 1040 // ER_CON_COUNT_ERROR
	errTooManyUserConnections = 1203 // ER_TOO_MANY_USER_CONNECTIONS
	errDBAccessDenied         = 1044 // ER_DBACCESS_DENIED_ERROR
	errAccessDenied           = 1045 // ER_ACCESS_DENIED_ERROR
	errBadDB                  = 1049 // ER_BAD_DB_ERROR
	errUserLimitReached       = 1226 // ER_USER_LIMIT_REACHED (max_connections_per_hour, ...)
	errAccessDeniedNoPassword = 1698 // ER_ACCESS_DENIED_NO_PASSWORD_ERROR

	// A server's word that it ended this connection (connectionEnded).
	errClientInteractionTimeout = 4031 // MySQL 8 ER_CLIENT_INTERACTION_TIMEOUT
	errConnectionKilled         = 1927 // MariaDB ER_CONNECTION_KILLED
)

// isReadOnlyRefusal reports whether a server error says the server is
// read-only. Error 1290 is also what --secure-file-priv and other options
// return, so its message must name the read-only option: the option's name
// is not translated, whatever lc_messages says.
func isReadOnlyRefusal(me *mysql.MySQLError) bool {
	switch me.Number {
	case errReadOnlyMode:
		return true
	case errOptionPreventsStatement:
		msg := strings.ToLower(me.Message)
		return strings.Contains(msg, "read-only") || strings.Contains(msg, "read_only")
	}
	return false
}

// refusedByDriver reports whether err is go-sql-driver refusing the call
// itself before writing anything, for the caller's mistake: a statement
// larger than max_allowed_packet, a named parameter, an isolation level
// MySQL does not have. Nothing was sent, the connection is fine, and the
// node is not at fault: classify makes it a server error, returned as it
// is, neither retried nor a failure of the node. (The last two have no
// exported error value: their text is the driver's.)
func refusedByDriver(err error) bool {
	if errors.Is(err, mysql.ErrPktTooLarge) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "mysql: driver does not support the use of Named Parameters") ||
		strings.Contains(msg, "mysql: unsupported isolation level")
}

// partialRefusalError is a read-only refusal of a query that may have
// applied part of itself before it (several statements, a CALL: see
// refusedWhole). classify makes it a server error, returned as it is and
// never tried on another node, where the part applied would be applied
// again. Its text is the server's.
type partialRefusalError struct{ err error }

func (e *partialRefusalError) Error() string { return e.err.Error() }
func (e *partialRefusalError) Unwrap() error { return e.err }

// refusedPart returns err, unless it is a read-only refusal of a query
// that may have applied part of itself first (not refusedWhole): that is
// reported to the cluster, as any read-only refusal is, and returned as a
// *partialRefusalError.
func (c *Cluster) refusedPart(n *node, query string, err error) error {
	var me *mysql.MySQLError
	if err == nil || refusedWhole(query) || !errors.As(err, &me) || !isReadOnlyRefusal(me) {
		return err
	}
	c.reportCall(c.nodeIndex(n), true, ClassReadOnly, err)
	return &partialRefusalError{err: err}
}

// refusedInReadOnlySession reports whether err is the server refusing a
// statement that writes in a read-only session.
func refusedInReadOnlySession(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errReadOnlyTransaction
}

// refusedAtConnect reports whether a server that is up refused a new
// connection: it is overloaded (too many connections) or this router is
// misconfigured for it (access denied, unknown database). Neither says the
// node is dead, and moving the writer elsewhere would put two writers on
// the ring while the node is healthy for everybody else: the call fails,
// nothing was sent, and the node's health is left alone.
func refusedAtConnect(err error) bool {
	var ce *connectError
	var me *mysql.MySQLError
	if !errors.As(err, &ce) || !errors.As(ce.err, &me) {
		return false
	}
	switch me.Number {
	case errTooManyConnections, errTooManyUserConnections, errDBAccessDenied, errAccessDenied,
		errBadDB, errAccessDeniedNoPassword, errUserLimitReached:
		return true
	}
	return false
}

// classify returns the class of err, returned by an attempt on one node.
// sent reports whether the statement may have been written to the
// connection: errors before that point are never outcome-unknown.
func classify(err error, sent bool) ErrorClass {
	var ce *connectError
	if !sent || errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		// go-sql-driver returns driver.ErrBadConn only when nothing was
		// written to the connection.
		return ClassNotSent
	}
	if refusedByDriver(err) {
		return ClassServerError
	}
	var pr *partialRefusalError
	if errors.As(err, &pr) {
		return ClassServerError
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		if isReadOnlyRefusal(me) {
			return ClassReadOnly
		}
		return ClassServerError
	}
	// mysql.ErrInvalidConn, io.EOF, i/o timeouts, a context ended while
	// the statement ran, and anything we do not recognise: the statement
	// may have been applied.
	return ClassOutcomeUnknown
}

// isReadStatement reports whether a statement is meant to only read, so
// that it may run in a read-only session and be retried on another node. It
// looks at the first keyword after any comments (sqlc starts each query
// with "-- name: ..."; an executable comment, /*! or /*M!, is not skipped
// and makes the statement a write); anything it does not recognise counts as a
// write, and so does a string of several statements (with
// multiStatements=true, "SELECT 1; INSERT ..." would otherwise pass): any
// ";" followed by more than blanks makes it a write, even one inside a
// string literal, which only costs that statement its retry.
func isReadStatement(query string) bool {
	q := skipComments(query)
	end := strings.IndexFunc(q, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	kw := q
	if end >= 0 {
		kw = q[:end]
	}
	switch strings.ToUpper(kw) {
	case "SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN":
	default:
		return false
	}
	if i := strings.IndexByte(q, ';'); i >= 0 && strings.TrimRight(q[i:], "; \t\r\n") != "" {
		return false
	}
	return true
}

// refusedWhole reports whether a read-only refusal of query says that
// none of it was applied, so that it may run again on the new writer: it
// is one statement, which the server refuses before it changes anything.
// A string of several statements (multiStatements=true) may have applied
// the first ones before the node turned read-only, and so may a CALL, a
// compound statement (BEGIN NOT ATOMIC) or an EXECUTE of either: their
// refusal is not retried. Comments before the first keyword are skipped
// (sqlc starts each query with "-- name: ..."), except MariaDB's
// executable comments (/*! and /*M!): a query starting with one counts as
// several statements. OpBegin, OpPrepare and OpPing pass "": nothing of
// theirs is applied.
func refusedWhole(query string) bool {
	if query == "" {
		return true
	}
	q := skipComments(query)
	end := strings.IndexFunc(q, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	kw := q
	if end >= 0 {
		kw = q[:end]
	}
	switch strings.ToUpper(kw) {
	case "", "CALL", "BEGIN", "EXECUTE":
		return false
	}
	if i := strings.IndexByte(q, ';'); i >= 0 && strings.TrimRight(q[i:], "; \t\r\n") != "" {
		return false
	}
	return true
}

// skipComments returns query without the blanks, opening parentheses and
// comments ("-- " or "#" to the end of the line, "/* ... */") before its
// first keyword. An executable comment (/*! or /*M!) is not skipped.
func skipComments(query string) string {
	q := query
	for {
		q = strings.TrimLeft(q, " \t\r\n(")
		switch {
		case strings.HasPrefix(q, "#") || strings.HasPrefix(q, "--") && (len(q) == 2 || strings.ContainsRune(" \t\r\n", rune(q[2]))):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*") && !strings.HasPrefix(q, "/*!") && !strings.HasPrefix(q, "/*M!"):
			i := strings.Index(q[2:], "*/")
			if i < 0 {
				return ""
			}
			q = q[2+i+2:]
		default:
			return q
		}
	}
}

// attemptFunc runs a call on one node, with ctx. sent reports whether the
// statement may have been written when err is not nil.
type attemptFunc func(ctx context.Context, n *node) (sent bool, err error)

// call runs attempt on the cluster's nodes in the picker's order until one
// succeeds, following the classification rules: not-sent and read-only
// failures move on to the next node, server errors are returned as is, and
// outcome-unknown failures are returned as *OutcomeUnknownError unless
// retryUnknown (a read, or an idempotent write) allows the next node. A
// write passes the failback fence first and stays behind it until call
// returns.
func (c *Cluster) call(ctx context.Context, op Op, read, retryUnknown bool, attempt attemptFunc) (err error) {
	if c.observer != nil {
		var t *Trace
		var start time.Time
		ctx, t, start = c.observeStart(ctx)
		defer func() { c.observeDone(ctx, op, t, start, err) }()
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.leave()
	if !read {
		if err := c.fence.enter(ctx); err != nil {
			return &notSentError{cluster: c.name, op: op, err: err}
		}
		defer c.fence.leave()
		if err := c.stillOpen(); err != nil {
			return err
		}
	}
	return c.attempts(ctx, op, read, retryUnknown, attempt)
}

// callHandingOn is call for a write whose result can still write after the
// call returns: the rows of INSERT ... RETURNING, a transaction. Its place
// behind the fence and among the calls in flight is a pass, put in the
// context given to attempt; the connection layer hands the pass on to the
// rows or transaction it returns (see nodeConn), which give it back when
// they are closed or end. A call that returns nothing gives it back itself.
func (c *Cluster) callHandingOn(ctx context.Context, op Op, retryUnknown bool, attempt attemptFunc) (err error) {
	if c.observer != nil {
		var t *Trace
		var start time.Time
		ctx, t, start = c.observeStart(ctx)
		defer func() { c.observeDone(ctx, op, t, start, err) }()
	}
	p, err := c.writePass(ctx, op)
	if err != nil {
		return err
	}
	defer func() {
		// Not handed on (also when the driver panicked): give it back.
		if !p.taken.Load() {
			p.giveBack()
		}
	}()
	return c.attempts(withPass(ctx, p), op, false, retryUnknown, attempt)
}

// writePass lets a write in, as a pass: counted among the calls in flight,
// past the fence (waiting, within ctx, while a failback holds it), on a
// cluster still open once it is past.
func (c *Cluster) writePass(ctx context.Context, op Op) (*pass, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	if err := c.fence.enter(ctx); err != nil {
		c.leave()
		return nil, &notSentError{cluster: c.name, op: op, err: err}
	}
	if err := c.stillOpen(); err != nil {
		c.fence.leave()
		c.leave()
		return nil, err
	}
	return newPass(func() {
		c.fence.leave()
		c.leave()
	}), nil
}

// attempts is the failover loop of call.
func (c *Cluster) attempts(ctx context.Context, op Op, read, retryUnknown bool, attempt attemptFunc) error {
	p := c.pick.Load()
	if !p.ready {
		c.awaitFirstRound(ctx)
		p = c.pick.Load()
	}
	err := c.attemptsOn(ctx, p, op, read, retryUnknown, attempt)
	if err != nil && c.settings.FailoverWait > 0 {
		return c.waitForNode(ctx, p, err, op, read, retryUnknown, attempt)
	}
	return err
}

// waitForNode is attempts for Settings.FailoverWait: while the call fails
// with a *NoNodeError that sent nothing anywhere, it waits for the next
// change of the cluster's health that routes the call differently, within
// ctx and FailoverWait, and tries again. The last error is returned when
// the wait ends; a cluster closed meanwhile ends it with ErrClosed.
func (c *Cluster) waitForNode(ctx context.Context, p *picker, err error, op Op, read, retryUnknown bool, attempt attemptFunc) error {
	var timer *time.Timer
	for {
		var nn *NoNodeError
		if !errors.As(err, &nn) || nn.unknown() {
			return err
		}
		if timer == nil {
			timer = time.NewTimer(c.settings.FailoverWait)
			defer timer.Stop()
			// A call waiting for a node keeps the cluster in use
			// (probe_idle.go): what it waits for is a probe's news.
			c.idle.waiting.Add(1)
			defer c.idle.waiting.Add(-1)
			c.wakeProbes()
		}
		// The attempts just made reported their failures, and each report
		// publishes a picker (most of them the same routing): waiting for
		// any new picker would make the call try again at once, report
		// again, and spin. Only a picker that routes differently is worth
		// another try.
		q := c.pick.Load()
		for p.sameRoute(q) {
			select {
			case <-q.changed:
			case <-timer.C:
				return err
			case <-ctx.Done():
				return &notSentError{cluster: c.name, op: op, err: fmt.Errorf("%w while waiting for a node (failover_wait %v): %w", ctx.Err(), c.settings.FailoverWait, err)}
			case <-c.stop:
				if cerr := c.stillOpen(); cerr != nil {
					return cerr
				}
				return &notSentError{cluster: c.name, op: op, err: ErrClosed}
			}
			q = c.pick.Load()
		}
		p = q
		if err = c.attemptsOn(ctx, p, op, read, retryUnknown, attempt); err == nil {
			return nil
		}
	}
}

// attemptsOn tries the nodes of picker p in order (see call).
func (c *Cluster) attemptsOn(ctx context.Context, p *picker, op Op, read, retryUnknown bool, attempt attemptFunc) error {
	var buf [8]int
	order := p.writes
	if read {
		order = p.reads
		if p.rotate && len(order) > 1 {
			k := int(c.rr.Add(1) % uint64(len(order)))
			order = append(append(buf[:0], order[k:]...), order[:k]...)
		}
	}
	if len(order) == 0 {
		c.noteUnrouted()
	}
	// Only a statement that ran says the node is writable: START
	// TRANSACTION succeeds on a read-only server, and Conn and a connect
	// send nothing.
	// Without probes such a write clears the node's read_only flag.
	clears := !read && op != OpBegin && op != OpConn && op != OpConnect && c.settings.Health.Disabled
	var tried []*NodeError
	for _, i := range order {
		n := c.nodes[i]
		sent, err := c.attemptOn(ctx, i, attempt)
		if err == nil {
			// Only what a success can change is reported: a Suspect node
			// may come Up, a flag may clear. A Down node comes back by
			// probes alone (a decided writer this router sees Down takes
			// every write: no lock and no new picker for each).
			if v := p.nodes[i]; v.state == StateSuspect || clears && v.readOnly {
				c.reportCall(i, clears, 0, nil)
			}
			traceOf(ctx).record(n.addr, tried)
			return nil
		}
		class := classify(err, sent)
		if class == ClassServerError {
			traceOf(ctx).record(n.addr, tried)
			return err
		}
		if class == ClassNotSent && refusedAtConnect(err) {
			// The node is up but refused this router a connection:
			// neither a failover nor a health change (refusedAtConnect).
			traceOf(ctx).record(n.addr, tried)
			ne := &NodeError{Node: n.addr, Class: class, Err: err}
			if u := c.unknownIn(op, tried, ne); u != nil {
				return u
			}
			return &notSentError{cluster: c.name, op: op, err: ne, tried: tried}
		}
		if ctx.Err() != nil {
			// The caller's deadline or cancellation ended the call.
			traceOf(ctx).record("", tried)
			if class == ClassNotSent || class == ClassReadOnly {
				if u := c.unknownIn(op, tried, ctx.Err()); u != nil {
					return u
				}
				return &notSentError{cluster: c.name, op: op, err: ctx.Err(), tried: tried}
			}
			return &OutcomeUnknownError{Cluster: c.name, Node: n.addr, Op: op, Err: err}
		}
		c.reportCall(i, !read, class, err)
		if class == ClassOutcomeUnknown && !retryUnknown {
			traceOf(ctx).record(n.addr, tried)
			return &OutcomeUnknownError{Cluster: c.name, Node: n.addr, Op: op, Err: err}
		}
		tried = append(tried, &NodeError{Node: n.addr, Class: class, Err: err})
	}
	traceOf(ctx).record("", tried)
	excluded := p.excluded
	if !read && p.refused != nil {
		excluded = p.refused // a WriterSource refuses writes: say so, node by node
	}
	return &NoNodeError{Cluster: c.name, Op: op, Attempts: append(tried, excluded...)}
}

// unknownIn returns, when one of the attempts tried before a call ended
// without sending anything more (its context ended, or a node refused it
// a connection) had an unknown outcome (a read, or a write marked
// idempotent, retried after it), an *OutcomeUnknownError naming that
// attempt's node, with why the call ended (end) in its chain; else nil.
// Such a call is not "not sent": as a NoNodeError with such an attempt,
// it matches ErrOutcomeUnknown and not ErrNotSent.
func (c *Cluster) unknownIn(op Op, tried []*NodeError, end error) error {
	for _, a := range tried {
		if a.Class == ClassOutcomeUnknown {
			return &OutcomeUnknownError{Cluster: c.name, Node: a.Node, Op: op, Err: fmt.Errorf("%w (then: %w)", a.Err, end)}
		}
	}
	return nil
}

// attemptOn runs attempt on node i, counted in with the node's stall watch
// until it returns — or panics: a driver's panic must not leave it counted
// in for ever, or the node would be checked every stallAfter from then on.
func (c *Cluster) attemptOn(ctx context.Context, i int, attempt attemptFunc) (sent bool, err error) {
	defer c.watchStall(i).stop()
	return attempt(ctx, c.nodes[i])
}
