package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// This file is the driver registered with database/sql as "dbrouter", for
// code that only takes a driver name and a DSN (sql.Open): the DSN names a
// Router the program registered (RegisterRouter) and one of its clusters.

// DriverName is the name under which this package registers its Driver
// with database/sql, as go-sql-driver/mysql registers "mysql":
// sql.Open(dbrouter.DriverName, "app/orders").
const DriverName = "dbrouter"

func init() { sql.Register(DriverName, Driver{}) }

// Driver is the database/sql driver registered as DriverName. Its DSN is
//
//	ROUTER/CLUSTER[?read=true]
//
// where ROUTER is a name given to RegisterRouter and CLUSTER a cluster of
// that router; with read=true the connections go to read nodes, as
// Router.OpenReadDB's do, else to the writer, as Router.OpenDB's do, with
// the same error contract. The DSN holds no address and no password.
// Driver implements driver.DriverContext: sql.Open parses the DSN once,
// and reports a malformed DSN, an unknown router or an unknown cluster
// there (a *ConfigError naming the part and its value, or an error
// matching ErrUnknownCluster). Unlike Router.OpenDB, sql.Open does not set
// the pool limits: set them on the *sql.DB. A Driver is stateless and safe
// for concurrent use.
type Driver struct{}

var (
	_ driver.Driver        = Driver{}
	_ driver.DriverContext = Driver{}
)

// Open parses dsn and connects, for code that calls the driver directly;
// database/sql calls OpenConnector instead.
func (d Driver) Open(dsn string) (driver.Conn, error) {
	k, err := d.OpenConnector(dsn)
	if err != nil {
		return nil, err
	}
	return k.Connect(context.Background())
}

// OpenConnector parses dsn (see Driver) and returns a connector over the
// cluster it names. The router is looked up now; the cluster is checked
// now and resolved again on every connect, so that the connector follows
// Router.Reload.
//
// A DSN holding '@' — a go-sql-driver DSN (user:password@tcp(host)/db)
// given to this driver by mistake — that does not name a registered
// router and one of its clusters is refused without showing any of it.
func (d Driver) OpenConnector(dsn string) (driver.Connector, error) {
	k, err := d.openConnector(dsn)
	if err != nil && strings.Contains(dsn, "@") {
		return nil, hiddenDSNError(err)
	}
	return k, err
}

// hiddenDSNError replaces err, about a DSN that may hold a password, by an
// error that shows none of the DSN; an unknown cluster still matches
// ErrUnknownCluster.
func hiddenDSNError(err error) error {
	const msg = `holds '@', as a MySQL DSN with a user and password does (not shown); the dbrouter DSN is ROUTER/CLUSTER or ROUTER/CLUSTER?read=true, with no address and no password`
	if errors.Is(err, ErrUnknownCluster) {
		return fmt.Errorf("dbrouter: dsn %s: %w", msg, ErrUnknownCluster)
	}
	return &ConfigError{Field: "dsn", Msg: msg}
}

func (d Driver) openConnector(dsn string) (driver.Connector, error) {
	name, cluster, read, err := parseDriverDSN(dsn)
	if err != nil {
		return nil, err
	}
	r, err := registeredRouter(name)
	if err != nil {
		return nil, err
	}
	if _, err := r.Cluster(cluster); err != nil {
		return nil, fmt.Errorf("dbrouter: dsn %q: %w", dsn, err)
	}
	return &clusterConnector{resolve: func() (*Cluster, error) { return r.Cluster(cluster) }, read: read, drv: d}, nil
}

// parseDriverDSN splits ROUTER/CLUSTER[?read=BOOL].
func parseDriverDSN(dsn string) (router, cluster string, read bool, err error) {
	const form = `want ROUTER/CLUSTER or ROUTER/CLUSTER?read=true`
	path, query, _ := strings.Cut(dsn, "?")
	router, cluster, ok := strings.Cut(path, "/")
	switch {
	case !ok:
		return "", "", false, &ConfigError{Field: "dsn", Value: dsn, Msg: "no '/' between router and cluster; " + form}
	case router == "":
		return "", "", false, &ConfigError{Field: "dsn router", Value: router, Msg: "empty router name; " + form}
	case cluster == "":
		return "", "", false, &ConfigError{Field: "dsn cluster", Value: cluster, Msg: "empty cluster name; " + form}
	case strings.Contains(cluster, "/"):
		return "", "", false, &ConfigError{Field: "dsn cluster", Value: cluster, Msg: "a cluster name has no '/'; " + form}
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return "", "", false, &ConfigError{Field: "dsn parameters", Value: query, Msg: err.Error()}
	}
	for k, vs := range params {
		if k != "read" {
			return "", "", false, &ConfigError{Field: "dsn parameter", Value: k, Msg: `unknown parameter; the only one is "read"`}
		}
		switch v := vs[len(vs)-1]; v {
		case "true", "1":
			read = true
		case "false", "0":
		default:
			return "", "", false, &ConfigError{Field: "dsn parameter read", Value: v, Msg: `want "true" or "false"`}
		}
	}
	return router, cluster, read, nil
}

// registry holds the routers registered for Driver's DSNs: the package's
// only mutable state, guarded by mu.
var registry struct {
	mu      sync.RWMutex
	routers map[string]*Router
}

// RegisterRouter makes r known to Driver under name, so that
// sql.Open(DriverName, name+"/CLUSTER") reaches its clusters. It returns a
// *ConfigError when name is empty or holds a '/' or '?', or is already
// registered; DeregisterRouter frees a name. Registering does not change
// r; closing r makes the calls of *sql.DBs opened over it fail with an
// error matching ErrClosed. It is safe for concurrent use.
func RegisterRouter(name string, r *Router) error {
	switch {
	case name == "":
		return &ConfigError{Field: "router name", Value: name, Msg: "empty"}
	case strings.ContainsAny(name, "/?"):
		return &ConfigError{Field: "router name", Value: name, Msg: "a router name has no '/' or '?'"}
	case r == nil:
		return &ConfigError{Field: "router", Value: name, Msg: "nil *Router"}
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if _, ok := registry.routers[name]; ok {
		return &ConfigError{Field: "router name", Value: name, Msg: "already registered (DeregisterRouter frees it)"}
	}
	if registry.routers == nil {
		registry.routers = make(map[string]*Router)
	}
	registry.routers[name] = r
	return nil
}

// DeregisterRouter forgets the router registered under name, if any:
// later sql.Open calls naming it fail; *sql.DBs already opened over it
// keep it. It is safe for concurrent use.
func DeregisterRouter(name string) {
	registry.mu.Lock()
	delete(registry.routers, name)
	registry.mu.Unlock()
}

func registeredRouter(name string) (*Router, error) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	if r, ok := registry.routers[name]; ok {
		return r, nil
	}
	names := make([]string, 0, len(registry.routers))
	for n := range registry.routers {
		names = append(names, n)
	}
	slices.Sort(names)
	known := "none"
	if len(names) > 0 {
		known = strings.Join(names, ", ")
	}
	return nil, &ConfigError{Field: "dsn router", Value: name, Msg: "no router registered under this name with dbrouter.RegisterRouter (registered: " + known + ")"}
}
