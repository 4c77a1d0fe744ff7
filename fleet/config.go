package fleet

import (
	"context"
	"errors"
	"fmt"

	"github.com/dbrouter/dbrouter"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The fleet's configuration is the YAML that dbrouter.LoadConfig reads
// (clusters, shard maps, defaults), stored as written at ConfigKey(prefix).
// PutConfig validates it before it writes it and writes it with a
// compare-and-swap on the key's mod revision; WatchConfig applies it, and
// every later revision, to a Router through Router.Reload.
//
// ${VAR} references are stored as written and expanded by each router from
// its own environment when it applies the configuration, so a password
// written as ${DB_PASSWORD} never reaches etcd. A literal password does:
// anyone who can read the key can read it.

// ErrConfigConflict is matched (errors.Is) by the error of PutConfig when
// the configuration in etcd is not at the revision the caller expected:
// someone else changed it, or created or deleted it, since the caller read
// it.
var ErrConfigConflict = errors.New("fleet: the configuration in etcd was changed by someone else")

// ErrNoConfig is matched (errors.Is) by the error of GetConfig when etcd
// holds no configuration under the prefix, and reported by WatchConfig
// when the key is absent or deleted.
var ErrNoConfig = errors.New("fleet: no configuration in etcd")

// ConflictError is the error of PutConfig when the configuration's key is
// not at the expected mod revision. It matches ErrConfigConflict.
type ConflictError struct {
	Key         string // the configuration's key
	ExpectedRev int64  // the mod revision the caller expected; 0: absent
	CurrentRev  int64  // the key's mod revision when the write was refused; 0: absent
}

// Error says who changed what: the key, the revision expected and the
// revision found.
func (e *ConflictError) Error() string {
	want := fmt.Sprintf("revision %d", e.ExpectedRev)
	if e.ExpectedRev == 0 {
		want = "no configuration"
	}
	found := fmt.Sprintf("revision %d", e.CurrentRev)
	if e.CurrentRev == 0 {
		found = "none"
	}
	return fmt.Sprintf("fleet: %s was changed by someone else: expected %s, found %s; read it again, check the change and retry with the revision found",
		e.Key, want, found)
}

// Is reports whether target is ErrConfigConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConfigConflict }

// PutConfig validates yaml with dbrouter.ParseConfig and, if it is valid,
// stores it at ConfigKey(prefix) provided the key's mod revision is still
// expectRev (0: the key must not exist), in one etcd transaction. It
// returns the revision of the write, which the next PutConfig expects.
//
// An invalid configuration is an error that wraps ParseConfig's (a
// *dbrouter.ConfigError names the field and its value) and nothing is
// written. Validation runs in the caller's environment: ${VAR} references
// must be set there too (to any value), and TLS files must be readable
// there; each router expands and checks them again, in its own
// environment, when it applies the configuration (see WatchConfig). A key
// at another revision is a *ConflictError, matching ErrConfigConflict, and
// nothing is written. Other errors come from etcd or ctx.
func PutConfig(ctx context.Context, cli *clientv3.Client, prefix string, yaml []byte, expectRev int64) (rev int64, err error) {
	if expectRev < 0 {
		return 0, fmt.Errorf("fleet: PutConfig: negative expected revision %d", expectRev)
	}
	if _, err := dbrouter.ParseConfig(yaml); err != nil {
		return 0, fmt.Errorf("fleet: configuration not stored: %w", err)
	}
	key := ConfigKey(prefix)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectRev)).
		Then(clientv3.OpPut(key, string(yaml))).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("fleet: storing the configuration at %s: %w", key, err)
	}
	if !resp.Succeeded {
		ce := &ConflictError{Key: key, ExpectedRev: expectRev}
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			ce.CurrentRev = rr.Kvs[0].ModRevision
		}
		return 0, ce
	}
	return resp.Header.Revision, nil
}

// GetConfig returns the configuration stored at ConfigKey(prefix), as it
// was written, and its mod revision (what PutConfig expects to replace
// it). When there is none, it returns a nil yaml, revision 0 and an error
// matching ErrNoConfig. It does not validate the configuration.
func GetConfig(ctx context.Context, cli *clientv3.Client, prefix string) (yaml []byte, rev int64, err error) {
	key := ConfigKey(prefix)
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("fleet: reading the configuration at %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("%w at %s", ErrNoConfig, key)
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// LoadConfig reads the configuration stored at ConfigKey(prefix), parses
// it with dbrouter.ParseConfig (expanding ${VAR} from this process's
// environment) and merges base into it as WatchConfig does (see
// WatchOptions.Base), so that the result can be passed to dbrouter.Open
// before WatchConfig follows the later revisions. base may be nil. It
// returns the key's mod revision with the configuration. No configuration
// is an error matching ErrNoConfig; an invalid one is ParseConfig's error.
func LoadConfig(ctx context.Context, cli *clientv3.Client, prefix string, base *dbrouter.Config) (*dbrouter.Config, int64, error) {
	yaml, rev, err := GetConfig(ctx, cli, prefix)
	if err != nil {
		return nil, 0, err
	}
	cfg, err := parseMerged(yaml, base)
	if err != nil {
		return nil, rev, fmt.Errorf("%w (in %s at revision %d)", err, ConfigKey(prefix), rev)
	}
	return cfg, rev, nil
}

// parseMerged parses a stored configuration and merges base into it.
func parseMerged(yaml []byte, base *dbrouter.Config) (*dbrouter.Config, error) {
	cfg, err := dbrouter.ParseConfig(yaml)
	if err != nil {
		return nil, err
	}
	if err := mergeBase(cfg, base); err != nil {
		return nil, err
	}
	return cfg, nil
}

// mergeBase adds to cfg what YAML cannot carry, from base: Logger,
// OnEvent, WriterSource, and the shard maps built in Go
// (ShardMapConfig.Map). A shard map of base with the name of one of cfg's
// is a *dbrouter.ConfigError.
func mergeBase(cfg, base *dbrouter.Config) error {
	if base == nil {
		return nil
	}
	cfg.Logger, cfg.OnEvent, cfg.WriterSource = base.Logger, base.OnEvent, base.WriterSource
	for name, smc := range base.ShardMaps {
		if smc.Map == nil {
			continue
		}
		if _, dup := cfg.ShardMaps[name]; dup {
			return &dbrouter.ConfigError{Field: "shard_maps." + name,
				Msg: "is also a shard map built in Go in the base configuration (ShardMapConfig.Map); rename one of them"}
		}
		if cfg.ShardMaps == nil {
			cfg.ShardMaps = make(map[string]dbrouter.ShardMapConfig)
		}
		cfg.ShardMaps[name] = smc
	}
	return nil
}
