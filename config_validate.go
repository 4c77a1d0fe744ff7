package dbrouter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
)

// Validate checks the configuration and returns a *ConfigError naming the
// first invalid field and its value, or nil. It reads the TLS files the
// configuration names. Open and Reload make the same checks.
func (c *Config) Validate() error {
	_, err := c.compile(nil, os.ReadFile)
	return err
}

// compile validates c and compiles it into the plan that Open and Reload
// build the router from (see plan): every check is made, every TLS file
// read and every shard map built here, once. The plan keeps c, which must
// not change afterwards: Open and Reload compile a copy of their own.
//
// origins maps the YAML path of each value that came from the environment
// to its text as written: errors show that text, not the value, which may
// be a secret put in the wrong field. readFile reads the TLS files
// (os.ReadFile, except in tests that count the reads).
func (c *Config) compile(origins map[string]string, readFile func(name string) ([]byte, error)) (*plan, error) {
	return c.compileKeeping(origins, readFile, nil)
}

// compileKeeping is compile that, with src, also keeps a copy of what each
// cluster was compiled from in its plan, for ParseConfig (see lastParsed).
func (c *Config) compileKeeping(origins map[string]string, readFile func(name string) ([]byte, error), src *srcCopy) (*plan, error) {
	p, err := c.compileClusters(origins, newTLSLoader(readFile), src)
	if err != nil {
		return nil, asWritten(err, origins)
	}
	if p.maps, err = c.buildShardMaps(); err != nil {
		return nil, asWritten(err, origins)
	}
	p.mapNames = sortedKeys(p.maps)
	return p, nil
}

// asWritten replaces the Value of a *ConfigError whose field's value came
// from the environment with the text that was written (see compile).
func asWritten(err error, origins map[string]string) error {
	var ce *ConfigError
	if errors.As(err, &ce) && ce.Value != "" {
		if orig, ok := origins[ce.Field]; ok {
			ce.Value = orig
		}
	}
	return err
}

// compileClusters checks the defaults and compiles every cluster; see
// compile for origins.
func (c *Config) compileClusters(origins map[string]string, tlsl *tlsLoader, src *srcCopy) (*plan, error) {
	if len(c.Clusters) == 0 {
		return nil, &ConfigError{Field: "clusters", Msg: "at least one cluster is required"}
	}
	if err := c.Defaults.validate("defaults"); err != nil {
		return nil, err
	}
	if c.Defaults.TLS != nil {
		// Checked even when every cluster has a TLS of its own.
		if _, err := tlsl.load(*c.Defaults.TLS, "defaults.tls"); err != nil {
			return nil, err
		}
	}
	p := &plan{cfg: c, clusters: make(map[string]*clusterPlan, len(c.Clusters))}
	p.names = c.clusterNames()
	var shared sharedDriver
	for _, name := range p.names {
		cp, err := c.compileCluster(name, origins, tlsl, &shared, src)
		if err != nil {
			return nil, err
		}
		p.clusters[name] = cp
	}
	return p, nil
}

// sharedDriver is the driver configuration, and its canonical text, of the
// clusters that have no settings of their own: their effective settings
// are the defaults', so it is built once for all of them.
type sharedDriver struct {
	base *mysql.Config // nil: not built yet
	spec string
}

// compileCluster checks cluster name and compiles it; see compile for
// origins.
func (c *Config) compileCluster(name string, origins map[string]string, tlsl *tlsLoader, shared *sharedDriver, src *srcCopy) (*clusterPlan, error) {
	cc := c.Clusters[name]
	path := "clusters." + name
	if strings.TrimSpace(name) == "" {
		return nil, &ConfigError{Field: "clusters", Value: name, Msg: "cluster name must not be empty"}
	}
	if !printableName(name) {
		return nil, &ConfigError{Field: "clusters", Value: name, Msg: "cluster name must be " + printableRule}
	}
	if len(cc.Nodes) == 0 {
		return nil, &ConfigError{Field: path + ".nodes", Msg: "at least one node is required"}
	}
	nodes := make([]nodePlan, len(cc.Nodes))
	for i, n := range cc.Nodes {
		addr, err := normalizeAddr(n)
		if err != nil {
			field := fmt.Sprintf("%s.nodes[%d]", path, i)
			msg := err.Error()
			var ae *addrError
			if _, fromEnv := origins[field]; fromEnv && errors.As(err, &ae) {
				msg = ae.msg // the detail may quote the value
			}
			return nil, &ConfigError{Field: field, Value: redactUserinfo(n), Msg: msg}
		}
		// A cluster has a few nodes: a scan costs less than a map.
		if j := slices.Index(nodes[:i], nodePlan{addr: addr}); j >= 0 {
			return nil, &ConfigError{Field: fmt.Sprintf("%s.nodes[%d]", path, i), Value: n, Msg: fmt.Sprintf("same node as %s.nodes[%d]", path, j)}
		}
		nodes[i] = nodePlan{addr: addr}
	}
	own := !reflect.ValueOf(cc.Settings).IsZero()
	if own {
		if err := cc.Settings.validate(path); err != nil {
			return nil, err
		}
	}
	eff := c.effective(name)
	if eff.User == "" {
		return nil, &ConfigError{Field: path + ".user", Msg: "no user: set defaults.user or " + path + ".user"}
	}
	var tp *tlsPlan
	if eff.TLS != nil {
		// The cluster's own TLS, or the defaults' (loaded already).
		field := "defaults.tls"
		if cc.TLS != nil {
			field = path + ".tls"
		}
		var err error
		if tp, err = tlsl.load(*eff.TLS, field); err != nil {
			return nil, err
		}
	}
	var cp *clusterPlan
	if !own && shared.base != nil {
		cp = newClusterPlan(name, eff, nodes, shared.base, shared.spec, tp)
	} else {
		base, err := eff.driverConfig()
		if err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				ce.Field = path + "." + ce.Field
			}
			return nil, err
		}
		spec := driverSpec(base)
		if !own {
			shared.base, shared.spec = base, spec
		}
		cp = newClusterPlan(name, eff, nodes, base, spec, tp)
	}
	if src != nil {
		src.keep(cp, cc, own)
	}
	return cp, nil
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
		if !printableName(name) {
			return nil, &ConfigError{Field: "shard_maps", Value: name, Msg: "shard map name must be " + printableRule}
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
		{"failover_wait", cc.FailoverWait},
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
	h := cc.Health
	if h.Interval < 0 {
		return &ConfigError{Field: path + ".health.interval", Value: h.Interval.String(), Msg: "must not be negative"}
	}
	if h.IdleInterval < 0 {
		return &ConfigError{Field: path + ".health.idle_interval", Value: h.IdleInterval.String(), Msg: "must not be negative"}
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
		return &ConfigError{Field: path + ".failback", Value: string(cc.Failback), Msg: `unknown failback; use "auto" or "never"`}
	}
	switch cc.ReadPolicy {
	case "", ReadWriter, ReadAnyUp, ReadRoundRobin:
	default:
		return &ConfigError{Field: path + ".read_policy", Value: string(cc.ReadPolicy), Msg: `unknown read policy; use "writer", "any-up" or "round-robin"`}
	}
	if cc.MaxLag < 0 {
		return &ConfigError{Field: path + ".max_lag", Value: cc.MaxLag.String(), Msg: "must not be negative"}
	}
	if cc.TxAttempts < 0 {
		return &ConfigError{Field: path + ".tx_attempts", Value: strconv.Itoa(cc.TxAttempts),
			Msg: fmt.Sprintf("must be at least 1 (0 means the default, %d)", DefaultTxAttempts)}
	}
	return nil
}

// printableRule is what printableName asks of a name, as errors say it.
const printableRule = "valid UTF-8 without control characters, invisible characters (bidi controls, zero-width spaces and joiners, soft hyphens, ...) or line and paragraph separators"

// printableName reports whether name, a cluster's or a shard map's, is
// valid UTF-8 without control characters (C0, DEL, C1), invisible
// characters or line and paragraph separators (U+2028, U+2029): names
// appear in errors, log lines, metric labels and events, where a byte
// that is not UTF-8 would be mangled and such a character could forge or
// garble a line (a newline, a terminal escape, a bidi override such as
// U+202E, which reorders what follows it on screen) or make two names
// look the same ("prod" and "pro\u200bd").
func printableName(name string) bool {
	return utf8.ValidString(name) && !strings.ContainsFunc(name, unprintable)
}

// unprintable reports whether r may not appear in a name (printableName):
// a control character, a line or paragraph separator, or one that shows
// as nothing — a format character (Unicode's Cf: bidi controls, zero-width
// space, joiners, word joiner, BOM, soft hyphen, U+180E, tags, ...), a
// variation selector or another of Unicode's default-ignorable code
// points (U+034F, the Hangul fillers, ...), or U+2800 BRAILLE PATTERN
// BLANK (a symbol that is drawn as a blank cell: the usual "invisible
// name" character, which neither strings.TrimSpace nor %q sees).
func unprintable(r rune) bool {
	if r < 0x7f && r >= 0x20 {
		return false // printable ASCII, the common case
	}
	return unicode.IsControl(r) || r == brailleBlank || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp,
		unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

// brailleBlank is U+2800 BRAILLE PATTERN BLANK (see unprintable).
const brailleBlank = '\u2800'

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
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == ':' || r == '%') {
			return "", &addrError{msg: "the host has a character that no host name or IP address has", detail: fmt.Sprintf(": %q", r)}
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", &addrError{msg: "port must be a number from 1 to 65535"}
	}
	if port[0] >= '1' && port[0] <= '9' && !strings.Contains(host, ":") && len(s) == len(host)+1+len(port) {
		return s, nil // already host:port as JoinHostPort writes it
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
