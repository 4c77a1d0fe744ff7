package dbrouter

import (
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// plan is a Config compiled once, by validation (Config.compile): every
// node's address normalised and its driver configuration built, every TLS
// file read, every shard map built. Open and Reload build the router's
// clusters from it, and Reload compares a cluster's plans, old and new, to
// decide whether to keep it (clusterPlan.sameAs). A plan is not changed
// once built.
type plan struct {
	cfg      *Config // the configuration compiled: the router's own copy
	clusters map[string]*clusterPlan
	names    []string // cluster names, sorted
	maps     map[string]ShardMap
	mapNames []string // shard map names, sorted
}

// clusterPlan is one cluster compiled.
type clusterPlan struct {
	name     string
	settings Settings // effective: the cluster's over the defaults, package defaults applied
	nodes    []nodePlan
	// base is the driver configuration the nodes share, without address
	// or TLS (see Settings.driverConfig). Clusters with the same settings
	// may share it: it is not changed, nodeDriver clones it.
	base *mysql.Config
	// driverSpec is the canonical text of the driver settings that the
	// nodes share, without address or TLS: go-sql-driver's FormatDSN, which
	// writes parameters in one order and leaves defaults out. It holds the
	// password: it is compared, never shown.
	driverSpec string
	tls        *tlsPlan // nil: no TLS

	// srcNodes and srcOwn are a copy of the ClusterConfig compiled, its
	// nodes and its own settings (nil: none), kept by ParseConfig for Open
	// to find out whether the Config changed since (see lastParsed).
	srcNodes []string
	srcOwn   *Settings
}

// nodePlan is one node compiled.
type nodePlan struct {
	addr string // normalised host:port
}

// newClusterPlan compiles cluster name from its effective settings, its
// nodes (their normalised addresses), the driver configuration the nodes
// share (without TLS; see Settings.driverConfig), its canonical text (see
// driverSpec) and its loaded TLS, if any. A node's own driver
// configuration is built only when the node is (nodeDriver).
func newClusterPlan(name string, eff Settings, nodes []nodePlan, base *mysql.Config, spec string, tp *tlsPlan) *clusterPlan {
	return &clusterPlan{name: name, settings: eff, base: base, driverSpec: spec, tls: tp, nodes: nodes}
}

// nodeDriver returns the configuration of the connections of node i,
// without dialer or logger, which the node adds (lazyConnector); the caller may change it.
func (cp *clusterPlan) nodeDriver(i int) *mysql.Config {
	addr := cp.nodes[i].addr
	mc := cp.base.Clone()
	mc.Addr = addr
	// The router handles read-only servers itself (read-only refusals
	// move the writer, reads run in read-only sessions). The driver's
	// rejectReadOnly would turn those refusals into driver.ErrBadConn:
	// a read that writes would look unsent on every node and demote
	// them all.
	mc.RejectReadOnly = false
	// The driver parsed the params at compile time and resolved a
	// registered serverPubKey then (Clone copies the key). Left named, it
	// would be looked up again when the node first connects (its
	// connector is lazy) and fail if deregistered since Open: keep the
	// key Open saw, as the connectors built at Open did.
	mc.ServerPubKey = ""
	if tp := cp.tls; tp != nil {
		mc.TLS = tp.config.Clone()
	}
	// TLS from the tls section or from the driver's tls parameter (base
	// holds it then, without server name: see driverConfig): each node
	// verifies its own host unless a server name is set.
	if mc.TLS != nil && mc.TLS.ServerName == "" && !mc.TLS.InsecureSkipVerify {
		mc.TLS.ServerName = hostOf(addr)
	}
	return mc
}

// driverSpec returns the canonical text of mc (see clusterPlan.driverSpec),
// where what the router overrides anyway (rejectReadOnly) and a default
// spelled out (tls=false) count for nothing.
func driverSpec(mc *mysql.Config) string {
	spec := *mc
	spec.RejectReadOnly = false
	if spec.TLSConfig == "false" {
		spec.TLSConfig = ""
	}
	return spec.FormatDSN()
}

// sameAs reports whether a and b are the same cluster, so that Reload may
// keep it with its pools, health and writer: the same node addresses in the
// same order once normalised ("db1" is "db1:3306"), the same driver
// settings once canonical (parameters in any order, defaults spelled out
// or not), the same TLS (tlsPlan.sameAs) and the same effective settings
// otherwise (pools, health, routing).
func (a *clusterPlan) sameAs(b *clusterPlan) bool {
	if a == nil || b == nil || len(a.nodes) != len(b.nodes) ||
		a.driverSpec != b.driverSpec || !a.tls.sameAs(b.tls) {
		return false
	}
	for i := range a.nodes {
		if a.nodes[i].addr != b.nodes[i].addr {
			return false
		}
	}
	// Params and TLS are compared above, in their canonical forms.
	sa, sb := a.settings, b.settings
	sa.Params, sa.TLS, sb.Params, sb.TLS = nil, nil, nil, nil
	return reflect.DeepEqual(sa, sb)
}

// parseAddr is the address driverConfig gives the driver's DSN parser, a
// name no node has (.invalid is reserved, RFC 2606): a TLS server name
// equal to its host is one the driver filled in from it.
const parseAddr = "dbrouter-parse.invalid:3306"

// driverConfig builds the go-sql-driver configuration shared by a cluster's
// nodes, without address or TLS section (see newClusterPlan). Params go
// through the driver's own DSN parser, so that every driver option is
// accepted and checked; its error is a *ConfigError whose Field is
// "params". TLS asked for by the tls parameter ("true" or the name of a
// registered configuration) is kept without the server name the driver
// fills in from the address it parses, so that each node verifies its own
// host (nodeDriver); a registered configuration's own server name is kept.
func (cc Settings) driverConfig() (*mysql.Config, error) {
	mc := mysql.NewConfig()
	if len(cc.Params) > 0 {
		keys := sortedKeys(cc.Params)
		q := make([]string, 0, len(keys))
		for _, k := range keys {
			q = append(q, url.QueryEscape(k)+"="+url.QueryEscape(cc.Params[k]))
		}
		parsed, err := parseDSN("tcp(" + parseAddr + ")/?" + strings.Join(q, "&"))
		if err != nil {
			msg := withoutValues(err.Error(), slices.Collect(maps.Values(cc.Params))...)
			return nil, &ConfigError{Field: "params", Value: strings.Join(keys, ","), Msg: msg}
		}
		mc = parsed
		mc.Addr = ""
		if mc.TLS != nil && mc.TLS.ServerName == hostOf(parseAddr) {
			mc.TLS.ServerName = ""
		}
	}
	mc.User = cc.User
	mc.Passwd = cc.Password
	mc.DBName = cc.Database
	mc.Net = "tcp"
	mc.Timeout = cc.ConnectTimeout
	mc.ReadTimeout = cc.ReadTimeout
	mc.WriteTimeout = cc.WriteTimeout
	return mc, nil
}
