package dbrouter

import "database/sql"

// Role is a node's part in its cluster, as NodeStats reports it.
type Role string

// The roles of a node.
const (
	// RoleWriter is the node that writes go to: the cluster's writer.
	RoleWriter Role = "writer"

	// RoleReplica is every other node.
	RoleReplica Role = "replica"
)

// PoolStats is the statistics of one of a node's connection pools, as
// NodeStats.Pools reports them.
type PoolStats struct {
	// Pool names the pool: "write" (the router's writes and
	// transactions), "read" (reads it may retry, in read-only sessions) or
	// "pinned" (Cluster.Writer and Cluster.Conn).
	Pool string
	sql.DBStats
}

// poolNames are the names PoolStats gives each poolKind.
var poolNames = [numPools]string{poolWrite: "write", poolRead: "read", poolPinned: "pinned"}

// addPoolStats fills in each node's Pools from the pools opened so far.
func (c *Cluster) addPoolStats(cs *ClusterStats) {
	for i, n := range c.nodes {
		if i >= len(cs.Nodes) {
			return
		}
		for k := range n.pools {
			if db := n.pools[k].db.Load(); db != nil {
				cs.Nodes[i].Pools = append(cs.Nodes[i].Pools, PoolStats{Pool: poolNames[k], DBStats: db.Stats()})
			}
		}
	}
}
