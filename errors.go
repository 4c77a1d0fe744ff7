package dbrouter

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package that belongs to one of
// these classes matches it with errors.Is, and the underlying driver error is
// always kept in the chain (errors.As finds *mysql.MySQLError, *net.OpError and
// so on).
var (
	// ErrOutcomeUnknown means the connection to a node broke after the
	// statement may have reached it: the statement may or may not have been
	// applied. It is never retried automatically for writes. The concrete type
	// is *OutcomeUnknownError.
	ErrOutcomeUnknown = errors.New("dbrouter: outcome unknown")

	// ErrNotSent means the statement provably never reached any server: every
	// attempt failed before the statement was written (dial refused, handshake
	// timed out, no connection before the deadline). It is safe to retry.
	// *NoNodeError matches it, as does a context error returned before any
	// statement was written.
	ErrNotSent = errors.New("dbrouter: statement not sent")

	// ErrNoNode means no node of a cluster could take the call, a write or a
	// read: every node that may serve it was tried in order and each failed,
	// and the others were Down or read-only. The concrete type is
	// *NoNodeError, which lists each node's failure.
	ErrNoNode = errors.New("dbrouter: no node could take the call")

	// ErrNoWriter is the former name of ErrNoNode, and the same error:
	// errors.Is matches either.
	//
	// Deprecated: Use ErrNoNode, which reads return too.
	ErrNoWriter = ErrNoNode

	// ErrUnknownCluster is returned by Router.Cluster for a name that is not
	// configured.
	ErrUnknownCluster = errors.New("dbrouter: unknown cluster")

	// ErrClosed is returned by calls made after Router.Close, and by calls
	// on a *Cluster that Router.Reload removed or replaced; those errors
	// also match ErrNotSent.
	ErrClosed = errors.New("dbrouter: closed")

	// ErrUnknownShardMap is returned by Router.Route and Router.Each for a
	// shard map name that is not configured.
	ErrUnknownShardMap = errors.New("dbrouter: unknown shard map")

	// ErrEmptyKey is returned by Router.Route (and every built-in ShardMap)
	// for an empty key.
	ErrEmptyKey = errors.New("dbrouter: empty shard key")

	// ErrNoShard means a shard map has no cluster for a key: it is outside
	// every range or entry and the map has no default.
	ErrNoShard = errors.New("dbrouter: key is in no shard")
)

// Op names the operation of a failed call in errors (OutcomeUnknownError.Op,
// NoNodeError.Op). Its values are the constants below; its text is what
// error messages show.
type Op string

// The operations.
const (
	// OpExec is Cluster.ExecContext.
	OpExec Op = "exec"
	// OpQuery is Cluster.QueryContext and Cluster.QueryRowContext.
	OpQuery Op = "query"
	// OpBegin is Cluster.BeginTx, and the BeginTx of each run of
	// Cluster.RunInTx.
	OpBegin Op = "begin"
	// OpConn is Cluster.Conn.
	OpConn Op = "conn"
	// OpPing is Cluster.PingContext, and a ping on a connection of
	// Router.OpenDB.
	OpPing Op = "ping"
	// OpConnect is a new connection of Router.OpenDB's *sql.DB (or of
	// Router.Connector).
	OpConnect Op = "connect"
	// OpPrepare is preparing a statement on a connection of Router.OpenDB.
	OpPrepare Op = "prepare"
	// OpPinned is a statement or transaction refused before it was sent
	// on a connection from Cluster.Conn or Cluster.Writer (its node is no
	// longer the writer, or the failback fence held it past its context);
	// what fails once sent on such a connection names what it was
	// (OpExec, OpQuery, OpBegin, OpPrepare, OpPing, or OpTxExec and
	// OpTxQuery inside a transaction).
	OpPinned Op = "statement on a pinned connection"
	// OpTxExec is Tx.ExecContext.
	OpTxExec Op = "exec in a transaction"
	// OpTxQuery is Tx.QueryContext and Tx.QueryRowContext.
	OpTxQuery Op = "query in a transaction"
	// OpCommit is Tx.Commit, and the COMMIT of Cluster.RunInTx.
	OpCommit Op = "commit"
	// OpTransaction is Cluster.RunInTx as a whole.
	OpTransaction Op = "transaction"
)

// OutcomeUnknownError reports a statement whose connection broke after the
// statement may have been sent, so it may or may not have been applied. It
// matches ErrOutcomeUnknown with errors.Is; Err is the driver's error.
type OutcomeUnknownError struct {
	Cluster string // the cluster's configured name
	Node    string // the node's address, host:port
	Op      Op     // the operation: OpExec, OpQuery, OpTxExec, OpCommit, ...
	Err     error  // the underlying error
}

// Error describes the failure without any credentials.
func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("dbrouter: cluster %q node %s: %s outcome unknown (connection lost after the statement may have been sent; it may or may not have been applied): %v",
		e.Cluster, e.Node, e.Op, e.Err)
}

// Unwrap returns the underlying error.
func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// Is reports whether target is ErrOutcomeUnknown.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// NodeError is one node's failure within a call, as listed by NoNodeError.
type NodeError struct {
	Node  string     // the node's address, host:port
	Class ErrorClass // how the failure was classified
	Err   error      // the underlying error
}

// Error describes the failure without any credentials.
func (e *NodeError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Node, e.Class, e.Err)
}

// Unwrap returns the underlying error.
func (e *NodeError) Unwrap() error { return e.Err }

// NoNodeError reports that no node of a cluster could take a call, a write
// or a read: every node that may serve it failed, and the others were Down
// or read-only. It matches ErrNoNode with errors.Is, and exactly one of
// ErrNotSent and ErrOutcomeUnknown: ErrNotSent when no attempt's outcome is
// unknown (always so for writes not marked idempotent, which are never
// retried after an outcome-unknown failure), so that nothing was applied
// anywhere and the call is safe to retry later; ErrOutcomeUnknown when some
// attempt's outcome is unknown (a read, or a write marked with
// WithIdempotent that was retried after such a failure). Attempts holds one
// *NodeError per node tried, in order, then one per node not tried (Down
// or read-only) with its last probe error.
type NoNodeError struct {
	Cluster  string       // the cluster's configured name
	Op       Op           // the operation: OpExec, OpQuery, OpBegin, OpConn, OpPing or OpTransaction
	Runs     int          // for OpTransaction, how many times RunInTx ran the transaction; else 0
	Attempts []*NodeError // each node's failure
}

// Error lists each node's failure.
func (e *NoNodeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dbrouter: cluster %q: no node could take the %s", e.Cluster, e.Op)
	if e.Runs > 0 {
		fmt.Fprintf(&b, " (run %d times)", e.Runs)
	}
	for _, a := range e.Attempts {
		b.WriteString("\n\t")
		b.WriteString(a.Error())
	}
	return b.String()
}

// Unwrap returns each node's error, so errors.Is and errors.As look into all
// of them (as with errors.Join).
func (e *NoNodeError) Unwrap() []error {
	errs := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		errs[i] = a
	}
	return errs
}

// Is reports whether target is ErrNoNode; or ErrNotSent when every
// attempt failed before its statement could have been applied, else
// ErrOutcomeUnknown.
func (e *NoNodeError) Is(target error) bool {
	switch target {
	case ErrNoNode:
		return true
	case ErrNotSent:
		return !e.unknown()
	case ErrOutcomeUnknown:
		return e.unknown()
	}
	return false
}

// unknown reports whether some attempt's outcome is unknown.
func (e *NoNodeError) unknown() bool {
	for _, a := range e.Attempts {
		if a.Class == ClassOutcomeUnknown {
			return true
		}
	}
	return false
}

// NoWriterError is the former name of NoNodeError, and the same type:
// errors.As finds either.
//
// Deprecated: Use NoNodeError, which reads return too.
type NoWriterError = NoNodeError

// notSentError wraps a context error that ended a call before any statement
// was written; it matches ErrNotSent as well as the context error.
type notSentError struct {
	cluster string
	op      Op
	node    string // the node of a statement in a transaction, or ""
	err     error
	tried   []*NodeError
}

func (e *notSentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dbrouter: cluster %q: %s", e.cluster, e.op)
	if e.node != "" {
		fmt.Fprintf(&b, " on %s", e.node)
	}
	fmt.Fprintf(&b, " not sent: %v", e.err)
	for _, a := range e.tried {
		b.WriteString("\n\t")
		b.WriteString(a.Error())
	}
	return b.String()
}

func (e *notSentError) Unwrap() []error {
	errs := []error{e.err}
	for _, a := range e.tried {
		errs = append(errs, a)
	}
	return errs
}

func (e *notSentError) Is(target error) bool { return target == ErrNotSent }

// ConfigError reports an invalid configuration value. Field is the path of
// the offending field as written in YAML (for example
// "clusters.cust-1.nodes[2]"), Value the offending value: never a password,
// and, for a value ParseConfig took from ${VAR}, the text as written rather
// than its expansion.
type ConfigError struct {
	Field string
	Value string
	Msg   string
}

// Error names the field, the value and what is wrong with it.
func (e *ConfigError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("dbrouter: config: %s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("dbrouter: config: %s: %q: %s", e.Field, e.Value, e.Msg)
}
