package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// ErrorClass is how a failed attempt on one node is treated.
type ErrorClass int

// The error classes of DESIGN.md §3, "Error classification".
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
	// (MySQL errors 1290 and 1836). Nothing was applied; the node loses the
	// writer role and the next node is tried.
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

// MySQL error numbers that mean "this server is read-only".
const (
	errOptionPreventsStatement = 1290 // ER_OPTION_PREVENTS_STATEMENT: --read-only
	errReadOnlyMode            = 1836 // ER_READ_ONLY_MODE
)

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
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		if me.Number == errOptionPreventsStatement || me.Number == errReadOnlyMode {
			return ClassReadOnly
		}
		return ClassServerError
	}
	// mysql.ErrInvalidConn, io.EOF, i/o timeouts, a context ended while
	// the statement ran, and anything we do not recognise: the statement
	// may have been applied.
	return ClassOutcomeUnknown
}

// isReadStatement reports whether a statement only reads, so that running
// it twice is harmless. It looks at the first keyword only; anything it does
// not recognise counts as a write.
func isReadStatement(query string) bool {
	q := strings.TrimLeft(query, " \t\r\n(")
	end := strings.IndexFunc(q, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	if end >= 0 {
		q = q[:end]
	}
	switch strings.ToUpper(q) {
	case "SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN":
		return true
	}
	return false
}

// attemptFunc runs a call on one node. sent reports whether the statement
// may have been written when err is not nil.
type attemptFunc func(n *node) (sent bool, err error)

// call runs attempt on the cluster's nodes in failover order until one
// succeeds, following the classification rules: not-sent and read-only
// failures move on to the next node, server errors are returned as is, and
// outcome-unknown failures are returned as *OutcomeUnknownError unless
// retryUnknown (a read) allows the next node.
func (c *Cluster) call(ctx context.Context, op string, retryUnknown bool, attempt attemptFunc) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var (
		tried []*NodeError
		buf   [8]*node
	)
	for _, n := range c.order(buf[:0]) {
		sent, err := attempt(n)
		if err == nil {
			c.succeeded(n, op)
			traceOf(ctx).record(n.addr, tried)
			return nil
		}
		class := classify(err, sent)
		if class == ClassServerError {
			traceOf(ctx).record(n.addr, tried)
			return err
		}
		if ctx.Err() != nil {
			// The caller's deadline or cancellation ended the call.
			traceOf(ctx).record("", tried)
			if class == ClassNotSent || class == ClassReadOnly {
				return &notSentError{cluster: c.name, op: op, err: ctx.Err(), tried: tried}
			}
			if retryUnknown {
				return fmt.Errorf("dbrouter: cluster %q node %s: %s: %w", c.name, n.addr, op, err)
			}
			return &OutcomeUnknownError{Cluster: c.name, Node: n.addr, Op: op, Err: err}
		}
		switch class {
		case ClassReadOnly:
			c.markReadOnly(n, err)
		case ClassNotSent:
			c.markDown(n, op, err)
		case ClassOutcomeUnknown:
			c.markDown(n, op, err)
			if !retryUnknown {
				traceOf(ctx).record(n.addr, tried)
				return &OutcomeUnknownError{Cluster: c.name, Node: n.addr, Op: op, Err: err}
			}
		}
		tried = append(tried, &NodeError{Node: n.addr, Class: class, Err: err})
	}
	traceOf(ctx).record("", tried)
	return &NoWriterError{Cluster: c.name, Op: op, Attempts: tried}
}

// order returns the cluster's nodes in the order a call tries them: nodes
// believed healthy and writable first, then read-only ones, then those that
// failed last time, each group in configured order. The current writer is
// therefore the first node returned.
func (c *Cluster) order(buf []*node) []*node {
	// Snapshot each node's rank once, so that a node changing state while
	// we look is listed exactly once.
	var rb [8]int8
	ranks := rb[:0]
	for _, n := range c.nodes {
		ranks = append(ranks, n.rank())
	}
	for rank := int8(0); rank < 3; rank++ {
		for i, n := range c.nodes {
			if ranks[i] == rank {
				buf = append(buf, n)
			}
		}
	}
	return buf
}

// rank orders nodes for failover: 0 healthy and writable, 1 read-only,
// 2 failed.
func (n *node) rank() int8 {
	switch {
	case n.down.Load():
		return 2
	case n.readOnly.Load():
		return 1
	}
	return 0
}

// succeeded records that n served a call.
func (c *Cluster) succeeded(n *node, op string) {
	if n.down.CompareAndSwap(true, false) {
		c.log.Info("node is back", "node", n.addr, "op", op)
	}
	if op == opQuery {
		return
	}
	n.readOnly.Store(false)
	if old := c.writer.Swap(n); old != n {
		from := ""
		if old != nil {
			from = old.addr
		}
		c.log.Info("writer changed", "from", from, "to", n.addr)
	}
}

func (c *Cluster) markDown(n *node, op string, err error) {
	if n.down.CompareAndSwap(false, true) {
		c.log.Warn("node failed; trying the next one", "node", n.addr, "op", op, "err", err)
	}
}

func (c *Cluster) markReadOnly(n *node, err error) {
	if n.readOnly.CompareAndSwap(false, true) {
		c.log.Warn("node is read-only; trying the next one", "node", n.addr, "err", err)
	}
}
