package prometheus_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/dbrouter/dbrouter"
	dbprom "github.com/dbrouter/dbrouter/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Example wires the Collector: it is the router's Observer, it reads the
// router's Stats at each scrape, and promhttp serves it on /metrics.
func Example() {
	metrics := dbprom.New()
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: "secret", Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{"main": {Nodes: []string{"127.0.0.1:3306", "127.0.0.1:3307"}}},
		Observer: metrics,
	}
	r, err := dbrouter.Open(cfg) // no network I/O yet
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	metrics.SetRouter(r)

	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux) // in a program: http.ListenAndServe(":9100", mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
