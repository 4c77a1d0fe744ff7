// Command customers shows an "initial" shard map: customer rows sharded by
// the first letter of the customer's name over three MariaDB rings.
//
// It starts three rings of three MariaDB servers on loopback with
// ringtest, loads a YAML configuration whose "customers" map sends A-H to
// cust-1, I-Q to cust-2 and R-Z to cust-3 (names that do not start with a
// letter go to cust-3 too, as `other`), and inserts customers through
// r.Route("customers", name). Three "web servers" (goroutines) then read
// random customers by name: any of them can read any customer, because
// routing needs only the name. It prints where each customer went.
//
//	go run ./examples/customers
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
)

// configYAML is the router's configuration; the node addresses come from
// the environment, as a deployment would fill them in. In a flow sequence
// ([a, b]) a ${VAR} must be quoted: YAML reads a bare "{" there as the
// start of a mapping.
const configYAML = `
defaults:
  user: ${CUST_USER}
  password: ${CUST_PASSWORD}
  database: ${CUST_DATABASE}
clusters:
  cust-1: { nodes: ["${CUST1_A}", "${CUST1_B}", "${CUST1_C}"] }
  cust-2: { nodes: ["${CUST2_A}", "${CUST2_B}", "${CUST2_C}"] }
  cust-3: { nodes: ["${CUST3_A}", "${CUST3_B}", "${CUST3_C}"] }
shard_maps:
  customers:
    strategy: initial
    ranges: { A-H: cust-1, I-Q: cust-2, R-Z: cust-3 }
    other: cust-3          # "123 Corp", "_test": not a letter
`

var customers = []string{
	"Adams", "baker", "Élodie Durand", "Fischer", "Garcia", "Hughes", "Ibsen", "Jones",
	"Kowalski", "Łukasz Nowak", "Müller", "Nakamura", "O'Brien", "Patel", "Quinn",
	"Rossi", "Smith", "ßmith GmbH", "Tanaka", "Ünal", "Vargas", "Wright", "Xu",
	"Young", "Zimmermann", "123 Corp",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "customers:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	fmt.Fprintln(out, "starting 3 rings of 3 MariaDB servers on loopback ...")
	h, err := ringtest.Start(ctx, ringtest.Options{Clusters: 3, Nodes: 3})
	if err != nil {
		return err
	}
	defer h.Close()

	env := map[string]string{
		"CUST_USER": ringtest.DefaultUser, "CUST_PASSWORD": ringtest.DefaultPassword, "CUST_DATABASE": ringtest.DefaultDatabase,
	}
	for k := range 3 {
		for i, letter := range []string{"A", "B", "C"} {
			env[fmt.Sprintf("CUST%d_%s", k+1, letter)] = h.Ring(k).Addr(i)
		}
	}
	for k, v := range env {
		os.Setenv(k, v)
	}
	cfg, err := dbrouter.ParseConfig([]byte(configYAML))
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := dbrouter.Open(cfg)
	if err != nil {
		return err
	}
	defer r.Close()

	if err := r.Each(ctx, "customers", 0, func(ctx context.Context, c *dbrouter.Cluster) error {
		_, err := c.ExecContext(ctx, "CREATE TABLE customer (name VARCHAR(64) PRIMARY KEY, since DATE NOT NULL) DEFAULT CHARSET=utf8mb4")
		return err
	}); err != nil {
		return err
	}

	placed := map[string][]string{}
	for _, name := range customers {
		c, err := r.Route("customers", name)
		if err != nil {
			return err
		}
		if _, err := c.ExecContext(ctx, "INSERT INTO customer VALUES (?, CURDATE())", name); err != nil {
			return fmt.Errorf("insert %q on %s: %w", name, c.Name(), err)
		}
		placed[c.Name()] = append(placed[c.Name()], name)
	}
	for _, cl := range r.Clusters() {
		fmt.Fprintf(out, "  %s: %s\n", cl, strings.Join(placed[cl], ", "))
	}
	if _, err := r.Route("customers", ""); errors.Is(err, dbrouter.ErrEmptyKey) {
		fmt.Fprintf(out, "  an empty name is an error: %v\n", err)
	}

	// Three web servers read random customers; each finds every one.
	var wg sync.WaitGroup
	reads := make([]int, 3)
	errs := make(chan error, 3)
	for w := range 3 {
		wg.Go(func() {
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				name := customers[rand.IntN(len(customers))]
				c, err := r.Route("customers", name)
				if err != nil {
					errs <- err
					return
				}
				var got string
				if err := c.QueryRowContext(ctx, "SELECT name FROM customer WHERE name = ?", name).Scan(&got); err != nil {
					errs <- fmt.Errorf("web%d: read %q on %s: %w", w+1, name, c.Name(), err)
					return
				}
				reads[w]++
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(out, "web servers read customers by name: web1 %d, web2 %d, web3 %d reads, all found\n", reads[0], reads[1], reads[2])

	// Each customer is on its own cluster only.
	err = r.Each(ctx, "customers", 0, func(ctx context.Context, c *dbrouter.Cluster) error {
		var n int
		if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM customer").Scan(&n); err != nil {
			return err
		}
		if n != len(placed[c.Name()]) {
			return fmt.Errorf("%s holds %d customers, want %d", c.Name(), n, len(placed[c.Name()]))
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "OK: %d customers, each on exactly the cluster its initial maps to.\n", len(customers))
	return nil
}
