package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestCustomers runs the example against real rings, as `go run` does.
func TestCustomers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "OK: 26 customers") {
		t.Fatal("no OK line")
	}
}
