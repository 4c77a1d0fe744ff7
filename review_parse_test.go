package dbrouter

import (
	"strings"
	"testing"
)

// TestFastYAMLLongFlowKey checks that a flow mapping key more than 1024
// characters before its colon, which yaml.v3 refuses (a simple key is at
// most 1024 characters), is not accepted by fastYAML either: ParseConfig
// refused such a file before fastYAML.
func TestFastYAMLLongFlowKey(t *testing.T) {
	long := strings.Repeat("k", 1100)
	for _, s := range []string{
		"a: {" + long + ": b}\n",
		"a: {'" + long + "': b}\n",
		"a: {b: c, " + long + ": d}\n",
		"a:\n- {" + long + ": b}\n",
		"a: [{" + long + ": b}]\n",
	} {
		checkFastYAML(t, []byte(s))
	}
	_, err := ParseConfig([]byte("clusters: {c" + long + ": {nodes: [db1]}}\n"))
	if err == nil || !strings.Contains(err.Error(), "invalid YAML") {
		t.Fatalf("ParseConfig of a flow key of 1101 characters: %v, want yaml.v3's invalid YAML", err)
	}
}
