package dbrouter

import (
	"log/slog"
	"maps"
	"slices"
	"time"
)

// Default values applied by Open (and by Config.Validate's checks) to fields
// left at their zero value.
const (
	// DefaultConnectTimeout bounds the dial and the MySQL handshake of every
	// new connection. A frozen server accepts the TCP connection and then
	// never answers, so this bound, not the dial timeout, is what turns a
	// frozen node into a failover.
	DefaultConnectTimeout = 1 * time.Second

	// DefaultMaxIdleConns is the number of idle connections kept per node
	// (database/sql's own default is 2, which makes a busy app reconnect).
	DefaultMaxIdleConns = 10

	// DefaultPort is used for a node address given without a port.
	DefaultPort = 3306

	// DefaultTxAttempts is how many times Cluster.RunInTx runs a
	// transaction at most when Settings.TxAttempts is zero.
	DefaultTxAttempts = 5
)

// MaxTxAttempts is the former name of DefaultTxAttempts, from when the
// number of runs was not a setting.
//
// Deprecated: Use Settings.TxAttempts (YAML tx_attempts) to set it, and
// DefaultTxAttempts for its default.
const MaxTxAttempts = DefaultTxAttempts

// Config is a router's configuration: connection defaults and named clusters.
// Build it as a Go struct literal, or with ParseConfig or LoadConfig from
// YAML; the caller may edit it before passing it to Open. Zero values mean
// the documented default. Open and Reload work on a copy (see Clone): once
// they have returned, the caller may edit the Config again, even while the
// router runs, and pass it to Reload; it must not be edited during the call.
type Config struct {
	// Defaults apply to every cluster; a cluster's own non-zero settings
	// override them field by field.
	Defaults Settings `yaml:"defaults"`

	// Clusters maps a cluster's name to its nodes and settings.
	Clusters map[string]ClusterConfig `yaml:"clusters"`

	// ShardMaps maps a shard map's name to its strategy and table; see
	// ShardMapConfig and Router.Route.
	ShardMaps map[string]ShardMapConfig `yaml:"shard_maps"`

	// Logger receives the router's log lines (failovers, node failures).
	// Nil means slog.Default(). It cannot be set from YAML.
	Logger *slog.Logger `yaml:"-" json:"-"`

	// OnEvent, when set, receives every node state change and writer
	// change (see Event), in order, on a goroutine of the router's: it must
	// not block for long (events beyond a buffer of 1024 are dropped and
	// counted in a log line). It cannot be set from YAML.
	OnEvent func(Event) `yaml:"-" json:"-"`

	// WriterSource, when set, decides every cluster's writer instead of
	// this router's local rule, so that a fleet of routers agrees on one
	// writer (see WriterSource). It cannot be set from YAML; Reload keeps
	// that of Open.
	WriterSource WriterSource `yaml:"-" json:"-"`

	// Observer, when set, receives the router's measurements — calls,
	// failed attempts, events, probes, fence waits, reloads — for a
	// metrics or tracing system (see Observer and docs/observability.md).
	// Nil costs nothing. It cannot be set from YAML; Reload keeps that of
	// Open.
	Observer Observer `yaml:"-" json:"-"`
}

// ClusterConfig describes one cluster: its nodes in failover order and its
// connection settings.
type ClusterConfig struct {
	// Nodes are the cluster's servers as "host:port" (port 3306 when
	// omitted), in failover order: writes go to the first healthy one.
	Nodes []string `yaml:"nodes"`

	// Settings overrides Config.Defaults for this cluster.
	Settings `yaml:",inline"`
}

// Settings holds the settings of a cluster: connection parameters, health
// probes and routing policy. In Config.Defaults they apply to every cluster.
type Settings struct {
	// User is the MySQL user. Required (here or in Defaults).
	User string `yaml:"user"`

	// Password is the user's password. In YAML, write ${ENV_VAR} to keep it
	// out of the file. It never appears in errors, nor where a Config,
	// ClusterConfig or Settings is printed with fmt, logged with log/slog or
	// encoded with encoding/json: "REDACTED" stands for it (see
	// Config.Format for the two cases where fmt prints it anyway).
	Password string `yaml:"password"`

	// Database is the default schema of every connection.
	Database string `yaml:"database"`

	// Params are go-sql-driver DSN parameters (parseTime, interpolateParams,
	// loc, collation, ...); names the driver does not know are session
	// variables set on every new connection. A cluster's Params are merged
	// over Defaults.Params key by key.
	Params map[string]string `yaml:"params"`

	// ConnectTimeout bounds establishing a connection: dial, TLS and the
	// MySQL handshake. Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`

	// ReadTimeout and WriteTimeout are the driver's I/O timeouts on an
	// established connection. Zero means none: a statement may run as long
	// as the caller's context allows.
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`

	// MaxOpenConns limits open connections per node; zero means unlimited.
	MaxOpenConns int `yaml:"max_open_conns"`

	// MaxIdleConns is the idle pool size per node; zero means
	// DefaultMaxIdleConns.
	MaxIdleConns int `yaml:"max_idle_conns"`

	// ConnMaxLifetime and ConnMaxIdleTime bound a pooled connection's age
	// and idle time; zero means no limit.
	ConnMaxLifetime time.Duration `yaml:"conn_max_lifetime"`
	ConnMaxIdleTime time.Duration `yaml:"conn_max_idle_time"`

	// TLS, when set, makes every connection use TLS. A cluster's TLS
	// replaces Defaults.TLS as a whole.
	TLS *TLSConfig `yaml:"tls"`

	// Health configures the background probes of every node.
	Health HealthConfig `yaml:"health"`

	// Failback says whether writes move back to an earlier node in the list
	// once it has recovered and caught up: FailbackAuto (the default, "")
	// or FailbackNever, which keeps the current writer until it fails.
	Failback FailbackMode `yaml:"failback"`

	// ReadPolicy chooses the node of a read (QueryContext, QueryRowContext):
	// ReadWriter (the default, ""; reads see the caller's own writes),
	// ReadAnyUp (the first healthy node in configured order) or
	// ReadRoundRobin (healthy nodes in turn).
	ReadPolicy ReadPolicy `yaml:"read_policy"`

	// MaxLag, when set, keeps reads under ReadAnyUp and ReadRoundRobin off
	// nodes that have not caught up with the writer for longer than this
	// (see Lag in NodeStats). The writer itself always qualifies.
	MaxLag time.Duration `yaml:"max_lag"`

	// TxAttempts is how many times Cluster.RunInTx runs a transaction at
	// most, the first run included. Zero means DefaultTxAttempts; 1 never
	// re-runs.
	TxAttempts int `yaml:"tx_attempts"`

	// FailoverWait, when set, makes a call that finds no node able to take
	// it — every node Down, read-only or refusing, nothing sent anywhere —
	// wait up to this long (and within its context) for the cluster's
	// health to change, and try again, instead of failing at once with
	// ErrNoNode: a writer that is being replaced (a node made read-only by
	// hand before the next one is made writable, a crash while the next
	// node is not yet confirmed) then costs a delay instead of errors. A
	// call tries again only when the change routes it differently (its
	// own failed attempts change nothing), and a Close ends the wait with
	// ErrClosed. Zero (the default) fails at once, as database/sql would.
	FailoverWait time.Duration `yaml:"failover_wait"`
}

// FailbackMode says whether writes move back to an earlier node once it
// has recovered (Settings.Failback). In YAML it is written as the string
// of its constant: "auto" or "never".
type FailbackMode string

// The failback modes.
const (
	// FailbackAuto moves writes back to an earlier node in the list once
	// it has recovered and caught up, through the failback fence. It is
	// the default.
	FailbackAuto FailbackMode = "auto"

	// FailbackNever keeps the current writer until it fails.
	FailbackNever FailbackMode = "never"
)

// ReadPolicy chooses the node of a read (Settings.ReadPolicy). In YAML it
// is written as the string of its constant: "writer", "any-up" or
// "round-robin".
type ReadPolicy string

// The read policies.
const (
	// ReadWriter sends reads to the writer (then, should it fail, the
	// other nodes in write order, then the read-only ones): reads see the
	// caller's own writes. It is the default.
	ReadWriter ReadPolicy = "writer"

	// ReadAnyUp sends reads to the first Up node in configured order.
	ReadAnyUp ReadPolicy = "any-up"

	// ReadRoundRobin sends reads to the Up nodes in turn.
	ReadRoundRobin ReadPolicy = "round-robin"
)

// Default health settings: a frozen writer is demoted within about
// Interval*FailAfter + Timeout (0.7 s), and a node that failed serves again
// after RecoverAfter good probes (0.75 s).
const (
	DefaultProbeInterval = 250 * time.Millisecond
	DefaultProbeTimeout  = 200 * time.Millisecond
	DefaultFailAfter     = 2
	DefaultRecoverAfter  = 3
	// DefaultIdleInterval is the time between two probes of an Up node of
	// a cluster that no call has used for a while (HealthConfig.IdleInterval).
	DefaultIdleInterval = 1 * time.Second
)

// HealthConfig configures a cluster's background probes. Zero values mean
// the defaults above.
type HealthConfig struct {
	// Interval is the time between two probes of a node.
	Interval time.Duration `yaml:"interval"`

	// IdleInterval is the time between two probes of a node that is Up
	// while no call has started on its cluster for twice IdleInterval:
	// such a cluster has nothing in flight for a fault to stall, so its
	// probes only keep its state fresh, and a router with thousands of
	// clusters in use spends less on them (docs/health.md, "Idle
	// clusters"). The first call on an idle cluster probes its nodes at
	// once and they are probed every Interval again. A Suspect or Down
	// node is always probed every Interval. Zero means
	// DefaultIdleInterval; a value not above Interval turns the idle
	// rate off.
	IdleInterval time.Duration `yaml:"idle_interval"`

	// Timeout bounds one probe, a new connection's handshake included.
	Timeout time.Duration `yaml:"timeout"`

	// FailAfter is the number of consecutive failed probes that take a node
	// Down. The first failure makes it Suspect.
	FailAfter int `yaml:"fail_after"`

	// RecoverAfter is the number of consecutive good probes that bring a
	// Down node Up again, and that a node needs before writes move back to
	// it.
	RecoverAfter int `yaml:"recover_after"`

	// Disabled turns the probes off: nodes are then judged by calls alone
	// (a failed node is tried after the others until a call succeeds on it).
	Disabled bool `yaml:"disabled"`
}

// TLSConfig holds TLS settings. Validate, Open and Reload read its files,
// each file once however many clusters use it; nothing reads them later.
type TLSConfig struct {
	// CAFile is a PEM file of CA certificates to verify servers with. Empty
	// means the system's roots.
	CAFile string `yaml:"ca_file"`

	// CertFile and KeyFile are the client certificate and key (PEM), for
	// servers that require X.509 client authentication. Set both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`

	// ServerName is the name verified in the server's certificate. Empty
	// means each node's host.
	ServerName string `yaml:"server_name"`

	// DangerousSkipVerify disables verification of the server's certificate:
	// anyone on the path can then impersonate the server and read the
	// password. Only for tests.
	DangerousSkipVerify bool `yaml:"dangerous_skip_verify"`
}

// Clone returns a deep copy of c: the maps and slices of c, of its Defaults,
// clusters and shard maps, and its TLS settings are copied, so that editing
// either Config leaves the other as it was. Logger, OnEvent, WriterSource, Observer and a ready
// ShardMapConfig.Map are shared: they cannot be copied. Nil maps and slices
// stay nil. Clone of a nil *Config is nil.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	cp := *c
	cp.Defaults = c.Defaults.clone()
	if c.Clusters != nil {
		cp.Clusters = make(map[string]ClusterConfig, len(c.Clusters))
		for name, cc := range c.Clusters {
			cc.Nodes = slices.Clone(cc.Nodes)
			cc.Settings = cc.Settings.clone()
			cp.Clusters[name] = cc
		}
	}
	cp.ShardMaps = cloneShardMaps(c.ShardMaps)
	return &cp
}

// cloneShardMaps returns a deep copy of shard maps sm, as Clone copies
// them; nil stays nil.
func cloneShardMaps(sm map[string]ShardMapConfig) map[string]ShardMapConfig {
	if sm == nil {
		return nil
	}
	cp := make(map[string]ShardMapConfig, len(sm))
	for name, smc := range sm {
		smc.Ranges = maps.Clone(smc.Ranges)
		smc.Entries = maps.Clone(smc.Entries)
		smc.Clusters = slices.Clone(smc.Clusters)
		smc.Params = maps.Clone(smc.Params)
		cp[name] = smc
	}
	return cp
}

// clone returns a copy of s that shares no map or pointer with it.
func (s Settings) clone() Settings {
	s.Params = maps.Clone(s.Params)
	if s.TLS != nil {
		t := *s.TLS
		s.TLS = &t
	}
	return s
}

func (c *Config) clusterNames() []string {
	names := make([]string, 0, len(c.Clusters))
	for name := range c.Clusters {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// effective merges a cluster's settings over the defaults and applies the
// package defaults to zero values.
func (c *Config) effective(name string) Settings {
	d, o := c.Defaults, c.Clusters[name].Settings
	e := d
	pick := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	pickDur := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	pickInt := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	pick(&e.User, o.User)
	pick(&e.Password, o.Password)
	pick(&e.Database, o.Database)
	pickDur(&e.ConnectTimeout, o.ConnectTimeout)
	pickDur(&e.ReadTimeout, o.ReadTimeout)
	pickDur(&e.WriteTimeout, o.WriteTimeout)
	pickDur(&e.ConnMaxLifetime, o.ConnMaxLifetime)
	pickDur(&e.ConnMaxIdleTime, o.ConnMaxIdleTime)
	pickInt(&e.MaxOpenConns, o.MaxOpenConns)
	pickInt(&e.MaxIdleConns, o.MaxIdleConns)
	if o.Failback != "" {
		e.Failback = o.Failback
	}
	if o.ReadPolicy != "" {
		e.ReadPolicy = o.ReadPolicy
	}
	pickDur(&e.MaxLag, o.MaxLag)
	pickInt(&e.TxAttempts, o.TxAttempts)
	pickDur(&e.FailoverWait, o.FailoverWait)
	pickDur(&e.Health.Interval, o.Health.Interval)
	pickDur(&e.Health.IdleInterval, o.Health.IdleInterval)
	pickDur(&e.Health.Timeout, o.Health.Timeout)
	pickInt(&e.Health.FailAfter, o.Health.FailAfter)
	pickInt(&e.Health.RecoverAfter, o.Health.RecoverAfter)
	e.Health.Disabled = d.Health.Disabled || o.Health.Disabled
	if o.TLS != nil {
		e.TLS = o.TLS
	}
	if len(d.Params)+len(o.Params) > 0 {
		e.Params = make(map[string]string, len(d.Params)+len(o.Params))
		for k, v := range d.Params {
			e.Params[k] = v
		}
		for k, v := range o.Params {
			e.Params[k] = v
		}
	}
	if e.ConnectTimeout == 0 {
		e.ConnectTimeout = DefaultConnectTimeout
	}
	if e.MaxIdleConns == 0 {
		e.MaxIdleConns = DefaultMaxIdleConns
	}
	if e.Failback == "" {
		e.Failback = FailbackAuto
	}
	if e.ReadPolicy == "" {
		e.ReadPolicy = ReadWriter
	}
	if e.Health.Interval == 0 {
		e.Health.Interval = DefaultProbeInterval
	}
	if e.Health.Timeout == 0 {
		e.Health.Timeout = DefaultProbeTimeout
	}
	if e.Health.IdleInterval == 0 {
		e.Health.IdleInterval = DefaultIdleInterval
	}
	if e.Health.FailAfter == 0 {
		e.Health.FailAfter = DefaultFailAfter
	}
	if e.Health.RecoverAfter == 0 {
		e.Health.RecoverAfter = DefaultRecoverAfter
	}
	if e.TxAttempts == 0 {
		e.TxAttempts = DefaultTxAttempts
	}
	return e
}
