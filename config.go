package dbrouter

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
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
)

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
	Failback string `yaml:"failback"`

	// ReadPolicy chooses the node of a read (QueryContext, QueryRowContext):
	// ReadWriter (the default, ""; reads see the caller's own writes),
	// ReadAnyUp (the first healthy node in configured order) or
	// ReadRoundRobin (healthy nodes in turn).
	ReadPolicy string `yaml:"read_policy"`

	// MaxLag, when set, keeps reads under ReadAnyUp and ReadRoundRobin off
	// nodes that have not caught up with the writer for longer than this
	// (see Lag in NodeStats). The writer itself always qualifies.
	MaxLag time.Duration `yaml:"max_lag"`
}

// Failback and read policies.
const (
	FailbackAuto  = "auto"
	FailbackNever = "never"

	ReadWriter     = "writer"
	ReadAnyUp      = "any-up"
	ReadRoundRobin = "round-robin"
)

// Default health settings: a frozen writer is demoted within about
// Interval*FailAfter + Timeout (0.7 s), and a node that failed serves again
// after RecoverAfter good probes (0.75 s).
const (
	DefaultProbeInterval = 250 * time.Millisecond
	DefaultProbeTimeout  = 200 * time.Millisecond
	DefaultFailAfter     = 2
	DefaultRecoverAfter  = 3
)

// HealthConfig configures a cluster's background probes. Zero values mean
// the defaults above.
type HealthConfig struct {
	// Interval is the time between two probes of a node.
	Interval time.Duration `yaml:"interval"`

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

// TLSConfig holds TLS settings. Files are read by Open (and Validate).
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
// either Config leaves the other as it was. Logger, OnEvent, WriterSource and a ready
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
	if c.ShardMaps != nil {
		cp.ShardMaps = make(map[string]ShardMapConfig, len(c.ShardMaps))
		for name, smc := range c.ShardMaps {
			smc.Ranges = maps.Clone(smc.Ranges)
			smc.Entries = maps.Clone(smc.Entries)
			smc.Clusters = slices.Clone(smc.Clusters)
			smc.Params = maps.Clone(smc.Params)
			cp.ShardMaps[name] = smc
		}
	}
	return &cp
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

// Validate checks the configuration and returns a *ConfigError naming the
// first invalid field and its value, or nil. Open calls it.
func (c *Config) Validate() error {
	_, err := c.validate(nil)
	return err
}

// validate is Validate returning the shard maps it built, so that Open and
// Reload build them once. origins maps the YAML path of each value that
// came from the environment to its text as written: errors show that text,
// not the value, which may be a secret put in the wrong field.
func (c *Config) validate(origins map[string]string) (map[string]ShardMap, error) {
	if err := c.validateClusters(origins); err != nil {
		return nil, asWritten(err, origins)
	}
	maps, err := c.buildShardMaps()
	return maps, asWritten(err, origins)
}

// asWritten replaces the Value of a *ConfigError whose field's value came
// from the environment with the text that was written (see validate).
func asWritten(err error, origins map[string]string) error {
	var ce *ConfigError
	if errors.As(err, &ce) && ce.Value != "" {
		if orig, ok := origins[ce.Field]; ok {
			ce.Value = orig
		}
	}
	return err
}

// validateClusters checks the defaults and every cluster; see validate for
// origins.
func (c *Config) validateClusters(origins map[string]string) error {
	if len(c.Clusters) == 0 {
		return &ConfigError{Field: "clusters", Msg: "at least one cluster is required"}
	}
	if err := c.Defaults.validate("defaults"); err != nil {
		return err
	}
	for _, name := range c.clusterNames() {
		cc := c.Clusters[name]
		path := "clusters." + name
		if strings.TrimSpace(name) == "" {
			return &ConfigError{Field: "clusters", Value: name, Msg: "cluster name must not be empty"}
		}
		if len(cc.Nodes) == 0 {
			return &ConfigError{Field: path + ".nodes", Msg: "at least one node is required"}
		}
		seen := make(map[string]int, len(cc.Nodes))
		for i, n := range cc.Nodes {
			field := fmt.Sprintf("%s.nodes[%d]", path, i)
			addr, err := normalizeAddr(n)
			if err != nil {
				msg := err.Error()
				var ae *addrError
				if _, fromEnv := origins[field]; fromEnv && errors.As(err, &ae) {
					msg = ae.msg // the detail may quote the value
				}
				return &ConfigError{Field: field, Value: redactUserinfo(n), Msg: msg}
			}
			if j, dup := seen[addr]; dup {
				return &ConfigError{Field: field, Value: n, Msg: fmt.Sprintf("same node as %s.nodes[%d]", path, j)}
			}
			seen[addr] = i
		}
		if err := cc.Settings.validate(path); err != nil {
			return err
		}
		eff := c.effective(name)
		if eff.User == "" {
			return &ConfigError{Field: path + ".user", Msg: "no user: set defaults.user or " + path + ".user"}
		}
		if _, err := eff.driverConfig(); err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				ce.Field = path + "." + ce.Field
			}
			return err
		}
	}
	return nil
}

// buildShardMaps builds every shard map and checks that each cluster it
// names is configured.
func (c *Config) buildShardMaps() (map[string]ShardMap, error) {
	maps := make(map[string]ShardMap, len(c.ShardMaps))
	for _, name := range sortedKeys(c.ShardMaps) {
		smc := c.ShardMaps[name]
		path := "shard_maps." + name
		if strings.TrimSpace(name) == "" {
			return nil, &ConfigError{Field: "shard_maps", Value: name, Msg: "shard map name must not be empty"}
		}
		m, err := NewShardMap(smc)
		if err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				ce.Field = path + "." + ce.Field
				return nil, ce
			}
			return nil, fmt.Errorf("dbrouter: config: %s: %w", path, err)
		}
		check := func(field, cluster string) error {
			if _, ok := c.Clusters[cluster]; !ok {
				return &ConfigError{Field: path + "." + field, Value: cluster,
					Msg: fmt.Sprintf("unknown cluster (configured: %s)", strings.Join(c.clusterNames(), ", "))}
			}
			return nil
		}
		var errs []error
		switch smc.Strategy {
		case StrategyInitial, StrategyDirectory, StrategyHash:
			// Every cluster a built-in map names is in one of these
			// fields: name the field that holds an unknown one.
			for _, k := range sortedKeys(smc.Ranges) {
				errs = append(errs, check("ranges."+k, smc.Ranges[k]))
			}
			for _, k := range sortedKeys(smc.Entries) {
				errs = append(errs, check("entries."+k, smc.Entries[k]))
			}
			for i, cl := range smc.Clusters {
				errs = append(errs, check(fmt.Sprintf("clusters[%d]", i), cl))
			}
			if smc.Other != "" {
				errs = append(errs, check("other", smc.Other))
			}
			if smc.Default != "" {
				errs = append(errs, check("default", smc.Default))
			}
		default:
			// A user map's fields mean what it says they mean: ask it.
			if l, ok := m.(ClusterLister); ok {
				for _, cl := range l.Clusters() {
					errs = append(errs, check("clusters", cl))
				}
			}
		}
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		maps[name] = m
	}
	return maps, nil
}

// validate checks the fields of one Settings; path is its YAML path.
func (cc *Settings) validate(path string) error {
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"connect_timeout", cc.ConnectTimeout},
		{"read_timeout", cc.ReadTimeout},
		{"write_timeout", cc.WriteTimeout},
		{"conn_max_lifetime", cc.ConnMaxLifetime},
		{"conn_max_idle_time", cc.ConnMaxIdleTime},
	}
	for _, f := range durations {
		if f.d < 0 {
			return &ConfigError{Field: path + "." + f.name, Value: f.d.String(), Msg: "must not be negative"}
		}
	}
	if cc.MaxOpenConns < 0 {
		return &ConfigError{Field: path + ".max_open_conns", Value: strconv.Itoa(cc.MaxOpenConns), Msg: "must not be negative"}
	}
	if cc.MaxIdleConns < 0 {
		return &ConfigError{Field: path + ".max_idle_conns", Value: strconv.Itoa(cc.MaxIdleConns), Msg: "must not be negative"}
	}
	for _, k := range sortedKeys(cc.Params) {
		if k == "" {
			return &ConfigError{Field: path + ".params", Msg: "empty parameter name"}
		}
		// Each parameter alone, so that the error names it; driverConfig
		// checks them together.
		v := cc.Params[k]
		if _, err := parseDSN("/?" + url.QueryEscape(k) + "=" + url.QueryEscape(v)); err != nil {
			return &ConfigError{Field: path + ".params." + k, Value: v, Msg: withoutValues(err.Error(), v)}
		}
	}
	if cc.TLS != nil {
		if _, err := cc.TLS.build(path + ".tls"); err != nil {
			return err
		}
	}
	h := cc.Health
	if h.Interval < 0 {
		return &ConfigError{Field: path + ".health.interval", Value: h.Interval.String(), Msg: "must not be negative"}
	}
	if h.Timeout < 0 {
		return &ConfigError{Field: path + ".health.timeout", Value: h.Timeout.String(), Msg: "must not be negative"}
	}
	if h.FailAfter < 0 {
		return &ConfigError{Field: path + ".health.fail_after", Value: strconv.Itoa(h.FailAfter), Msg: "must not be negative"}
	}
	if h.RecoverAfter < 0 {
		return &ConfigError{Field: path + ".health.recover_after", Value: strconv.Itoa(h.RecoverAfter), Msg: "must not be negative"}
	}
	switch cc.Failback {
	case "", FailbackAuto, FailbackNever:
	default:
		return &ConfigError{Field: path + ".failback", Value: cc.Failback, Msg: `unknown failback; use "auto" or "never"`}
	}
	switch cc.ReadPolicy {
	case "", ReadWriter, ReadAnyUp, ReadRoundRobin:
	default:
		return &ConfigError{Field: path + ".read_policy", Value: cc.ReadPolicy, Msg: `unknown read policy; use "writer", "any-up" or "round-robin"`}
	}
	if cc.MaxLag < 0 {
		return &ConfigError{Field: path + ".max_lag", Value: cc.MaxLag.String(), Msg: "must not be negative"}
	}
	return nil
}

// normalizeAddr checks a node address and adds the default port. Its error
// is an *addrError.
func normalizeAddr(s string) (string, error) {
	if strings.TrimSpace(s) != s || s == "" {
		return "", &addrError{msg: "node address must be host:port with no spaces"}
	}
	if strings.Contains(s, "@") || strings.Contains(s, "/") {
		return "", &addrError{msg: "node address must be host:port, not a DSN (set user, password and database as fields)"}
	}
	if !strings.HasPrefix(s, "[") && strings.Count(s, ":") > 1 {
		return "", &addrError{msg: "more than one colon: an IPv6 address must be in brackets", detail: bracketHint(s)}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: "db1" or "[::1]".
		host, port = s, strconv.Itoa(DefaultPort)
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			host = s[1 : len(s)-1]
		}
		if strings.ContainsAny(host, "[]") {
			return "", &addrError{msg: "brackets must enclose the whole host, as in [::1]:3306"}
		}
	}
	if host == "" {
		return "", &addrError{msg: "node address has no host"}
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:%", r)) {
			return "", &addrError{msg: "the host has a character that no host name or IP address has", detail: fmt.Sprintf(": %q", r)}
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", &addrError{msg: "port must be a number from 1 to 65535"}
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// addrError is a node address that normalizeAddr rejects. msg does not
// quote the address, which ConfigError.Value shows; detail, which may
// quote part of it, is left out where the address came from the
// environment and may be a secret put in the wrong field.
type addrError struct {
	msg    string
	detail string
}

func (e *addrError) Error() string { return e.msg + e.detail }

// bracketHint suggests how to write s, an address with more than one colon
// and no brackets: "::1:3306" may be port 3306 of ::1 or the address
// ::1:3306; "fe80::1" is an address without a port.
func bracketHint(s string) string {
	i := strings.LastIndexByte(s, ':')
	host, port := s[:i], s[i+1:]
	_, hostErr := netip.ParseAddr(host)
	_, addrErr := netip.ParseAddr(s)
	p, portErr := strconv.Atoi(port)
	hostPort := hostErr == nil && portErr == nil && p >= 1 && p <= 65535 && port[0] != '+' && port[0] != '-'
	switch {
	case hostPort && addrErr == nil:
		return fmt.Sprintf("; write [%s]:%s for port %s of %s, or [%s] for the address %s", host, port, port, host, s, s)
	case hostPort:
		return fmt.Sprintf("; write [%s]:%s", host, port)
	case addrErr == nil:
		return fmt.Sprintf("; write [%s] or [%s]:%d", s, s, DefaultPort)
	}
	return ", e.g. [::1]:3306"
}

// redactUserinfo replaces the password of a DSN or URL given as a node
// address ("app:pw@tcp(db1)/shop", "mysql://app:pw@db1/shop"): everything
// between the first colon and the last "@", which may hold more colons and
// "@"s of the password, becomes "REDACTED". Text without "@" is returned as
// it is.
func redactUserinfo(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(s[:at], ":")
	if !hasPassword {
		return s
	}
	return user + ":" + redactedPassword + s[at:]
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
	pick(&e.Failback, o.Failback)
	pick(&e.ReadPolicy, o.ReadPolicy)
	pickDur(&e.MaxLag, o.MaxLag)
	pickDur(&e.Health.Interval, o.Health.Interval)
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
	setDefault := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	setDefault(&e.Failback, FailbackAuto)
	setDefault(&e.ReadPolicy, ReadWriter)
	if e.Health.Interval == 0 {
		e.Health.Interval = DefaultProbeInterval
	}
	if e.Health.Timeout == 0 {
		e.Health.Timeout = DefaultProbeTimeout
	}
	if e.Health.FailAfter == 0 {
		e.Health.FailAfter = DefaultFailAfter
	}
	if e.Health.RecoverAfter == 0 {
		e.Health.RecoverAfter = DefaultRecoverAfter
	}
	return e
}

// withoutValues removes each of values from msg, a go-sql-driver error
// about DSN parameters, which quotes a bad value as is or URL-encoded: the
// error's Value shows it as written (a ${VAR} reference, not a secret). A
// message that still holds a value becomes "invalid value".
func withoutValues(msg string, values ...string) string {
	for _, v := range values {
		if v == "" {
			continue
		}
		for _, form := range []string{url.QueryEscape(v), v} {
			msg = strings.ReplaceAll(msg, ` "`+form+`"`, "")
			msg = strings.ReplaceAll(msg, `"`+form+`"`, "")
			msg = strings.TrimSuffix(msg, ": "+form)
			msg = strings.TrimSuffix(msg, " "+form)
		}
		if strings.Contains(msg, v) || strings.Contains(msg, url.QueryEscape(v)) {
			return "invalid value"
		}
	}
	return msg
}

// driverConfig builds the go-sql-driver configuration shared by a cluster's
// nodes (Addr is set per node). Params go through the driver's own DSN
// parser so that every driver option is accepted and checked.
// parseDSN is mysql.ParseDSN, which panics on some parameters (strict,
// removed from the driver): a configuration is user input, and a panic
// becomes an error.
func parseDSN(dsn string) (cfg *mysql.Config, err error) {
	defer func() {
		if p := recover(); p != nil {
			cfg, err = nil, fmt.Errorf("the MySQL driver refused it: %v", p)
		}
	}()
	return mysql.ParseDSN(dsn)
}

func (cc Settings) driverConfig() (*mysql.Config, error) {
	mc := mysql.NewConfig()
	if len(cc.Params) > 0 {
		keys := make([]string, 0, len(cc.Params))
		for k := range cc.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		q := make([]string, 0, len(keys))
		for _, k := range keys {
			q = append(q, url.QueryEscape(k)+"="+url.QueryEscape(cc.Params[k]))
		}
		parsed, err := parseDSN("/?" + strings.Join(q, "&"))
		if err != nil {
			msg := withoutValues(err.Error(), slices.Collect(maps.Values(cc.Params))...)
			return nil, &ConfigError{Field: "params", Value: strings.Join(keys, ","), Msg: msg}
		}
		mc = parsed
	}
	mc.User = cc.User
	mc.Passwd = cc.Password
	mc.DBName = cc.Database
	mc.Net = "tcp"
	mc.Timeout = cc.ConnectTimeout
	mc.ReadTimeout = cc.ReadTimeout
	mc.WriteTimeout = cc.WriteTimeout
	if cc.TLS != nil {
		t, err := cc.TLS.build("tls")
		if err != nil {
			return nil, err
		}
		mc.TLS = t
	}
	return mc, nil
}
