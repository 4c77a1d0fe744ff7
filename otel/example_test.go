package otel_test

import (
	"context"
	"fmt"
	"log"

	"github.com/dbrouter/dbrouter"
	dbotel "github.com/dbrouter/dbrouter/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Example wires the Observer to a program's tracer and meter providers
// (here the SDK's, which a program gives its exporters).
func Example() {
	tp := sdktrace.NewTracerProvider()
	mp := sdkmetric.NewMeterProvider()
	defer tp.Shutdown(context.Background())
	defer mp.Shutdown(context.Background())

	obs, err := dbotel.New(dbotel.Options{TracerProvider: tp, MeterProvider: mp, Namespace: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: "secret", Database: "shop"},
		Clusters: map[string]dbrouter.ClusterConfig{"main": {Nodes: []string{"127.0.0.1:3306", "127.0.0.1:3307"}}},
		Observer: obs,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	fmt.Println(r.Clusters())
	// Output: [main]
}
