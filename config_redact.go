package dbrouter

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"go.yaml.in/yaml/v3"
)

// Passwords are kept out of everything that prints a configuration: fmt
// (String and Format), log/slog (LogValue) and encoding/json (MarshalJSON).
// Config, ClusterConfig and Settings each define every one of these
// methods: ClusterConfig embeds Settings, so a method of Settings alone
// would be promoted to ClusterConfig and print its settings without its
// nodes.

// redactedPassword replaces a non-empty password wherever one is printed.
const redactedPassword = "REDACTED"

// configFields and settingsFields have the fields of Config and Settings
// and none of their methods: fmt and encoding/json print them field by
// field.
type (
	configFields   Config
	settingsFields Settings
)

// The methods of ClusterConfig below spell its fields out: this conversion
// stops compiling when a field is added.
var _ = ClusterConfig(struct {
	Nodes []string
	Settings
}{})

// redacted returns a copy of c whose passwords are replaced by
// "REDACTED". It shares the maps and slices of c except Clusters.
func (c Config) redacted() Config {
	c.Defaults = c.Defaults.redacted()
	clusters := make(map[string]ClusterConfig, len(c.Clusters))
	for name, cc := range c.Clusters {
		cc.Settings = cc.Settings.redacted()
		clusters[name] = cc
	}
	c.Clusters = clusters
	return c
}

func (cc Settings) redacted() Settings {
	if cc.Password != "" {
		cc.Password = redactedPassword
	}
	return cc
}

// String returns the configuration as YAML with every password replaced by
// "REDACTED".
func (c Config) String() string {
	type plain Config // no methods, so yaml does not recurse here
	out, err := yaml.Marshal(plain(c.redacted()))
	if err != nil {
		return fmt.Sprintf("dbrouter.Config{%d clusters}", len(c.Clusters))
	}
	return string(out)
}

// String returns the cluster settings with the password redacted.
func (cc ClusterConfig) String() string {
	return fmt.Sprintf("{Nodes:%v %v}", cc.Nodes, cc.Settings)
}

// String returns the settings with the password redacted.
func (cc Settings) String() string {
	return fmt.Sprintf("%+v", settingsFields(cc.redacted()))
}

// Format implements fmt.Formatter so that no verb prints the password: %v,
// %+v, %s, %q, %x and %X format String(), %#v prints Go syntax, and any
// other verb formats each field as fmt formats a struct, always with
// "REDACTED" for a password. fmt prints a value without calling any of its
// methods, and so shows its fields as they are, in two cases: the operand
// of %p or %w when it is not a pointer or an error (go vet reports both),
// and a value in an unexported field of another struct.
func (c Config) Format(f fmt.State, verb rune) {
	type Config configFields // prints as dbrouter.Config with %#v
	formatRedacted(f, verb, c.String, Config(c.redacted()))
}

// Format implements fmt.Formatter as Config.Format does.
func (cc ClusterConfig) Format(f fmt.State, verb rune) {
	type Settings settingsFields
	type ClusterConfig struct {
		Nodes []string
		Settings
	}
	formatRedacted(f, verb, cc.String, ClusterConfig{cc.Nodes, Settings(cc.Settings.redacted())})
}

// Format implements fmt.Formatter as Config.Format does.
func (cc Settings) Format(f fmt.State, verb rune) {
	type Settings settingsFields
	formatRedacted(f, verb, cc.String, Settings(cc.redacted()))
}

// formatRedacted formats for Format: str for the verbs fmt uses String
// for, fields, a redacted copy without methods, for the others.
func formatRedacted(f fmt.State, verb rune, str func() string, fields any) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprintf(f, fmt.FormatString(f, verb), fields)
	case verb == 'v', verb == 's', verb == 'q', verb == 'x', verb == 'X':
		fmt.Fprintf(f, fmt.FormatString(f, verb), str())
	default:
		fmt.Fprintf(f, fmt.FormatString(f, verb), fields)
	}
}

// LogValue implements slog.LogValuer: the configuration logs as a group of
// its Defaults, Clusters and ShardMaps, passwords replaced by "REDACTED".
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("Defaults", c.Defaults),
		slog.Any("Clusters", c.Clusters),
		slog.Any("ShardMaps", c.ShardMaps))
}

// LogValue implements slog.LogValuer: the cluster logs with its nodes and
// settings, the password replaced by "REDACTED".
func (cc ClusterConfig) LogValue() slog.Value {
	type Settings settingsFields
	return slog.AnyValue(struct {
		Nodes []string
		Settings
	}{cc.Nodes, Settings(cc.Settings.redacted())})
}

// LogValue implements slog.LogValuer: the settings log with the password
// replaced by "REDACTED".
func (cc Settings) LogValue() slog.Value {
	return slog.AnyValue(settingsFields(cc.redacted()))
}

// MarshalJSON encodes the configuration as encoding/json would encode its
// fields, except that every password is "REDACTED" (so the result does not
// decode back into the same Config) and Logger and OnEvent are left out.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(configFields(c.redacted()))
}

// MarshalJSON encodes the cluster as encoding/json would encode its fields,
// the settings inline, except that the password is "REDACTED".
func (cc ClusterConfig) MarshalJSON() ([]byte, error) {
	type Settings settingsFields
	return json.Marshal(struct {
		Nodes []string
		Settings
	}{cc.Nodes, Settings(cc.Settings.redacted())})
}

// MarshalJSON encodes the settings as encoding/json would encode their
// fields, except that the password is "REDACTED".
func (cc Settings) MarshalJSON() ([]byte, error) {
	return json.Marshal(settingsFields(cc.redacted()))
}
