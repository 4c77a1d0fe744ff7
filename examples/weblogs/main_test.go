package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestWeblogs runs the example against real rings, as `go run` does.
func TestWeblogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, &out, 2*time.Second)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "OK: every acknowledged row") {
		t.Fatal("no OK line")
	}
}
