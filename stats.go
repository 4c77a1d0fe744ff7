package dbrouter

// Role is a node's part in its cluster, as NodeStats reports it.
type Role string

// The roles of a node.
const (
	// RoleWriter is the node that writes go to: the cluster's writer.
	RoleWriter Role = "writer"

	// RoleReplica is every other node.
	RoleReplica Role = "replica"
)
