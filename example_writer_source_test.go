package dbrouter_test

import (
	"log"

	"github.com/dbrouter/dbrouter"
)

// operatorPin is a WriterSource that makes one node the writer of a
// cluster, whatever this router's own view: an operator's override. A
// fleet implementation (etcd) publishes each router's view from
// sink.Stats and decides from all of them.
type operatorPin struct {
	cluster, writer string
	epoch           uint64
}

func (p operatorPin) Watch(cluster string, nodes []string, sink dbrouter.WriterSink) (stop func()) {
	if cluster == p.cluster {
		err := sink.Decide(dbrouter.WriterDecision{Writer: p.writer, Epoch: p.epoch, Cause: "pinned by the operator"})
		if err != nil {
			log.Print(err) // e.g. the address is not one of nodes
		}
	}
	return func() {}
}

// ExampleWriterSource shows where a fleet-wide writer decision plugs in:
// Config.WriterSource. Here a source pins the writer of "customers-am" to
// its second node; writes then go there only, and the router does not fail
// them over on its own.
func ExampleWriterSource() {
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: "secret", Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{
			"customers-am": {Nodes: []string{"db1:3306", "db2:3306", "db3:3306"}},
		},
		WriterSource: operatorPin{cluster: "customers-am", writer: "db2:3306", epoch: 1},
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
}
