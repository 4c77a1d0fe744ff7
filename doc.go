// Package dbrouter routes database/sql calls to MySQL and MariaDB clusters,
// with ordered failover, background health probes, a fenced failback and
// shard maps.
//
// # Overview
//
// A cluster is an ordered list of servers that can each be the writer of
// the same data, typically a circular replication ring A→B→C→A. The order
// is the failover order. Calls on a [Cluster] go to its writer, chosen once
// every node has been probed: the first node in configured order that is
// Up, not read-only and not behind another node (missing transactions that
// did not originate on it, as a restarted old writer does). The writer
// keeps the role until a probe finds it failed or read-only (one failed
// call only makes it Suspect and probes it at once); then the next such
// node that holds the last writer's GTID position takes over, so that a
// restarted old writer is not chosen over a caught-up one. An earlier node
// gets the role back (failback) only after recover_after good probes in a
// row, once its position contains what the writer had one probe earlier,
// and through a fence: new writes are held, writes in flight finish, and
// the new writer must reach the old one's exact position before the
// switch. Every router that sees the same health picks the same writer;
// for a fleet of routers that must agree even when their views differ, a
// [WriterSource] (Config.WriterSource) decides the writer instead.
//
// Failover is safe for the caller: a statement that provably never reached
// a server is retried on the next node; one that may have reached it is
// returned as an [*OutcomeUnknownError] and is not retried, unless it is a
// read (which runs in a read-only session, so it cannot have written) or a
// write marked with [WithIdempotent]. [Cluster.RunInTx] re-runs a whole
// transaction on the next writer when it failed before its COMMIT was
// sent. Libraries that take a plain *sql.DB (gorm, sqlx, sqlc, bun, ent)
// get one that fails over from [Router.OpenDB] ([Router.OpenReadDB] for
// reads), or from sql.Open with the driver this package registers as
// [DriverName] and a router named with [RegisterRouter];
// [Cluster.Writer] is pinned to one node.
//
// Each node of a cluster in use is probed in the background (read_only and
// GTID position, on a connection of its own); its health is Up, Suspect or
// Down, reported by [Router.Stats] and as [Event] values to Config.OnEvent.
//
// A shard map turns a data set's key into a cluster name: by the key's
// first letter ([StrategyInitial]), by exact key ([StrategyDirectory]), by
// hash bucket ([StrategyHash]), or by any type that implements [ShardMap].
// [Router.Route] returns the cluster for a key, and [Router.Each] runs a
// function on every cluster of a map.
//
// [Router.Reload] swaps clusters and shard maps atomically while calls go
// on: unchanged clusters keep their pools, health and writer; removed or
// changed ones finish their calls in flight, then close.
// [Router.WatchConfigFile] reloads when a YAML file changes.
//
// # Usage
//
//	cfg, err := dbrouter.LoadConfig("dbrouter.yaml") // or a dbrouter.Config struct literal
//	if err != nil {
//		log.Fatal(err) // a *ConfigError names the field and the value
//	}
//	r, err := dbrouter.Open(cfg) // no network I/O: works while servers are down
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer r.Close()
//
//	orders, err := r.Cluster("orders")
//	if err != nil {
//		log.Fatal(err)
//	}
//	_, err = orders.ExecContext(ctx, "INSERT INTO orders (id, total) VALUES (?, ?)", id, total)
//	switch {
//	case errors.Is(err, dbrouter.ErrOutcomeUnknown): // may or may not be applied: check before retrying
//	case errors.Is(err, dbrouter.ErrNotSent): // applied nowhere: safe to retry
//	}
//
//	cust, err := r.Route("customers", "Smith") // the cluster of a shard map's key
//
// # Errors
//
// Every error a call on a cluster returns matches exactly one of
// [ErrNotSent] and [ErrOutcomeUnknown] (with [errors.Is]), or is the
// server's own error, a *mysql.MySQLError (duplicate key, syntax, lock wait
// timeout, ...) returned as it is. The driver's error stays in the chain, so
// [errors.As] finds *mysql.MySQLError, *net.OpError and the like.
//
//   - [ErrNotSent]: the statement provably reached no server; it is safe to
//     retry. Also matched by a context that ended before anything was
//     written, by a server that is up but refused a new connection (too many
//     connections, access denied: no failover), and by a statement on a
//     [Cluster.Conn] or [Cluster.Writer] connection whose node is no longer
//     the writer. On a connection of [Router.OpenDB] such a refusal also
//     matches driver.ErrBadConn, so that database/sql retries it on a new
//     connection, to the new writer.
//   - [ErrOutcomeUnknown]: the connection broke after the statement may
//     have been sent; the concrete type is [*OutcomeUnknownError], naming
//     the cluster, node and operation (an [Op] constant: [OpExec],
//     [OpCommit], ...). Writes are never retried after it.
//   - [ErrNoNode]: no node could take the call, a write or a read (every
//     node failed, or was Down or read-only); the concrete type is
//     [*NoNodeError], which lists each node's failure as a [*NodeError]
//     and also matches ErrNotSent, or ErrOutcomeUnknown when some attempt's
//     outcome was unknown (a read, or a write marked idempotent).
//     ErrNoWriter and NoWriterError are its former, deprecated names.
//   - [ErrClosed]: the router was closed, or [Router.Reload] retired the
//     cluster; it also matches ErrNotSent (get the cluster again and retry).
//   - [ErrUnknownCluster]: [Router.Cluster] was given a name that is not
//     configured.
//   - [ErrUnknownShardMap]: [Router.Route] or [Router.Each] was given a
//     shard map name that is not configured.
//   - [ErrEmptyKey] and [ErrNoShard]: [Router.Route] could not route a key
//     (empty, or in no range and the map has no default); Route returns a
//     [*RouteError] that names the map and the key and wraps the cause.
//   - [*ConfigError]: an invalid configuration, from [ParseConfig],
//     [LoadConfig], [Open] or [Router.Reload]; it names the field by its
//     YAML path and the offending value (never a password).
//
// The design as built — how each driver error is classified, the health
// states, the writer rule, the failback fence, transactions, reload and the
// consistency limits of asynchronous replication — is described in
// docs/design.md in the repository.
package dbrouter
