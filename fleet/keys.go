package fleet

import (
	"path"
	"time"
)

// The keys of a fleet, under its prefix (DefaultPrefix unless set):
//
//	<prefix>config                    the fleet's configuration, YAML (clusters, shard maps)
//	<prefix>routers/<router>          one per live router, under its lease: RouterInfo
//	<prefix>views/<cluster>/<router>  a router's view of a cluster, under its lease: View
//	<prefix>election                  the decider election (go.etcd.io/etcd/client/v3/concurrency)
//	<prefix>writers/<cluster>         the cluster's writer decision: Decision
//	<prefix>drained/<cluster>/<node>  the node is out of service for the fleet: DrainRecord
//	<prefix>switchovers/<cluster>     a SwitchoverWith under way, under its lease: SwitchoverRecord
//
// Values other than config are JSON. A prefix without a trailing "/" names
// the same keys as with one, and so does one with "//" or "/./" in it
// (the key functions clean it with path.Join).
const DefaultPrefix = "/dbrouter/"

// cleanPrefix returns prefix as the key functions below spell it (they
// clean it with path.Join: "//" and "/./" go), ending with one "/", so
// that prefix+"views/" names the keys ViewKey makes. Empty stays empty.
func cleanPrefix(prefix string) string {
	if prefix == "" {
		return ""
	}
	p := path.Clean(prefix)
	if p == "/" {
		return p
	}
	return p + "/"
}

// ConfigKey returns the key of the fleet's configuration.
func ConfigKey(prefix string) string { return path.Join(prefix, "config") }

// RouterKey returns the presence key of a router.
func RouterKey(prefix, router string) string { return path.Join(prefix, "routers", router) }

// ViewKey returns the key of a router's view of a cluster.
func ViewKey(prefix, cluster, router string) string {
	return path.Join(prefix, "views", cluster, router)
}

// ViewsPrefix returns the prefix of every router's view of a cluster.
func ViewsPrefix(prefix, cluster string) string { return path.Join(prefix, "views", cluster) + "/" }

// ElectionKey returns the prefix of the decider election.
func ElectionKey(prefix string) string { return path.Join(prefix, "election") }

// WriterKey returns the key of a cluster's writer decision.
func WriterKey(prefix, cluster string) string { return path.Join(prefix, "writers", cluster) }

// SwitchoverKey is the key SwitchoverWith holds, under a lease, while it
// makes a cluster's writer read-only and waits for the target to catch
// up: the decider then leaves the read-only writer to it instead of moving
// the writer on its own (it still moves a writer Down in a majority of
// views).
func SwitchoverKey(prefix, cluster string) string { return path.Join(prefix, "switchovers", cluster) }

// SwitchoverRecord is the value of a SwitchoverKey.
type SwitchoverRecord struct {
	From string    `json:"from"` // the writer being made read-only
	To   string    `json:"to"`   // the target
	By   string    `json:"by"`   // who asked
	At   time.Time `json:"at"`
}

// RouterInfo is what a live router publishes about itself.
type RouterInfo struct {
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// View is one router's view of one cluster's nodes.
type View struct {
	Router string     `json:"router"`
	At     time.Time  `json:"at"`
	Nodes  []NodeView `json:"nodes"`
	Writer string     `json:"writer,omitempty"` // the writer this router uses now ("" none)
	// Epoch is the epoch of the last fleet decision the router applied
	// (0: none): a first decision after the writer key was deleted
	// starts above the highest of the live routers' epochs, which they
	// would otherwise refuse as older.
	Epoch uint64 `json:"epoch,omitempty"`
	// Refused is why the router refuses the cluster's writes ("" when it
	// does not): the writer decision not read yet, or unreadable, a
	// decision naming a node it does not have, EtcdLost RefuseWrites.
	Refused string `json:"refused,omitempty"`
	// ReadError is the error of the router's reads of the cluster's
	// writer key while they fail ("" once one succeeds): see
	// ClusterStatus.ReadError.
	ReadError string `json:"read_error,omitempty"`
}

// NodeView is one router's view of one node.
type NodeView struct {
	Addr     string `json:"addr"`
	State    string `json:"state"` // "up", "suspect" or "down"
	ReadOnly bool   `json:"read_only"`
	GTID     string `json:"gtid,omitempty"`
	Error    string `json:"error,omitempty"`
	Probed   bool   `json:"probed"` // the router has probed the node: State means something
	// Drained: the router took the node out of service (dbrouter
	// Cluster.Drain, or the fleet's drain key: see DrainKey).
	Drained bool `json:"drained,omitempty"`
}

// Decision is a cluster's writer decision, as published by the decider.
type Decision struct {
	Writer  string    `json:"writer"` // node address, as the cluster's configuration spells it after normalisation
	Epoch   uint64    `json:"epoch"`
	GTID    string    `json:"gtid,omitempty"` // the writer's position when it was decided
	Cause   string    `json:"cause"`
	Decider string    `json:"decider"` // router ID of the decider
	At      time.Time `json:"at"`
}
