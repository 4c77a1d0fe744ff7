package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/fleet"
)

// cmdValidate checks FILE as dbrouter.LoadConfig does and prints what it
// holds, or the error.
func cmdValidate(e *env, args []string) int {
	file := args[0]
	cfg, err := dbrouter.LoadConfig(file)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitFail
	}
	if data, err := os.ReadFile(file); err == nil {
		if code := checkPasswords(e, "validate", file, data); code != exitOK {
			return code
		}
	}
	fmt.Fprintf(e.stdout, "%s: valid: %s\n", file, summary(cfg))
	return exitOK
}

// summary names the clusters and shard maps of a configuration.
func summary(cfg *dbrouter.Config) string {
	clusters := make([]string, 0, len(cfg.Clusters))
	for name := range cfg.Clusters {
		clusters = append(clusters, name)
	}
	maps := make([]string, 0, len(cfg.ShardMaps))
	for name := range cfg.ShardMaps {
		maps = append(maps, name)
	}
	return fmt.Sprintf("%s (%s), %s (%s)",
		plural(len(clusters), "cluster"), sortedList(clusters),
		plural(len(maps), "shard map"), sortedList(maps))
}

// checkPasswords warns about the literal passwords of a configuration
// that is, or may be, stored in etcd. A password that is the word the
// redaction prints was copied from redacted output: push refuses it.
func checkPasswords(e *env, cmd, file string, data []byte) int {
	secrets, _ := literalPasswords(data)
	for _, s := range secrets {
		if s.value != redacted {
			continue
		}
		if cmd == "push" {
			fmt.Fprintf(e.stderr, "dbrouter push: %s:%d: the password is %q: copied from redacted output? Write the password, or better ${VAR}\n",
				file, s.line, redacted)
			return exitFail
		}
		fmt.Fprintf(e.stderr, "warning: %s:%d: the password is %q: copied from redacted output?\n", file, s.line, redacted)
	}
	for _, s := range secrets {
		fmt.Fprintf(e.stderr, "warning: %s:%d: a literal password: in etcd, anyone who can read the fleet's keys can read it; write ${VAR} and set VAR in every router's environment\n",
			file, s.line)
	}
	return exitOK
}

// cmdPush validates FILE and stores it in etcd with a compare-and-swap:
// on the revision given by --expect-rev, else on the revision it reads
// just before.
func cmdPush(e *env, args []string) int {
	file := args[0]
	data, err := os.ReadFile(file)
	if err != nil {
		return e.fail("push", err)
	}
	if code := checkPasswords(e, "push", file, data); code != exitOK {
		return code
	}
	if _, err := dbrouter.ParseConfig(data); err != nil {
		// PutConfig would refuse it too; say so before connecting.
		fmt.Fprintf(e.stderr, "dbrouter push: %s not pushed: %v\n", file, err)
		return exitFail
	}
	cli, err := e.etcd()
	if err != nil {
		return e.fail("push", err)
	}
	key := fleet.ConfigKey(e.prefix)
	expect := e.expectRev
	if expect < 0 {
		cur, rev, err := fleet.GetConfig(e.ctx, cli, e.prefix)
		switch {
		case errors.Is(err, fleet.ErrNoConfig):
			expect = 0
		case err != nil:
			return e.fail("push", e.etcdErr(err))
		case bytes.Equal(cur, data):
			fmt.Fprintf(e.stdout, "%s unchanged: it is the configuration at %s, revision %d\n", file, key, rev)
			return exitOK
		default:
			expect = rev
		}
	}
	rev, err := fleet.PutConfig(e.ctx, cli, e.prefix, data, expect)
	if errors.Is(err, fleet.ErrConfigConflict) {
		fmt.Fprintf(e.stderr, "dbrouter push: %s not pushed: %v\nrun \"dbrouter diff %s\" to see the difference\n", file, err, file)
		return exitFail
	}
	if err != nil {
		return e.fail("push", e.etcdErr(err))
	}
	was := fmt.Sprintf("replaced revision %d", expect)
	if expect == 0 {
		was = "created"
	}
	fmt.Fprintf(e.stdout, "pushed %s to %s: revision %d (%s)\n", file, key, rev, was)
	return exitOK
}

// cmdShowConfig prints the stored configuration as stored.
func cmdShowConfig(e *env, _ []string) int {
	cli, err := e.etcd()
	if err != nil {
		return e.fail("show-config", err)
	}
	data, rev, err := fleet.GetConfig(e.ctx, cli, e.prefix)
	if err != nil {
		return e.fail("show-config", e.etcdErr(err))
	}
	fmt.Fprintf(e.stderr, "# %s, revision %d\n", fleet.ConfigKey(e.prefix), rev)
	e.stdout.Write(data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		fmt.Fprintln(e.stdout)
	}
	return exitOK
}

// cmdDiff prints a line diff of the stored configuration (-) and FILE
// (+), passwords hidden, and exits 1 when they differ.
func cmdDiff(e *env, args []string) int {
	file := args[0]
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(e.stderr, "dbrouter diff: %v\n", err)
		return exitUsage
	}
	cli, err := e.etcd()
	if err != nil {
		fmt.Fprintf(e.stderr, "dbrouter diff: %v\n", err)
		return exitUsage
	}
	key := fleet.ConfigKey(e.prefix)
	stored, rev, err := fleet.GetConfig(e.ctx, cli, e.prefix)
	name := fmt.Sprintf("etcd %s (revision %d)", key, rev)
	switch {
	case errors.Is(err, fleet.ErrNoConfig):
		name = fmt.Sprintf("etcd %s (none)", key)
	case err != nil:
		fmt.Fprintf(e.stderr, "dbrouter diff: %v\n", e.etcdErr(err))
		return exitUsage
	}
	if bytes.Equal(stored, data) {
		return exitOK
	}
	ra, rb := findRedactions(stored), findRedactions(data)
	showA := func(i int, s string) string { return ra.apply(i+1, s) }
	showB := func(i int, s string) string { return rb.apply(i+1, s) }
	if !writeUnified(e.stdout, name, file, splitLines(stored), splitLines(data), showA, showB) {
		// Same lines: they differ in a final newline only.
		fmt.Fprintf(e.stdout, "--- %s\n+++ %s\nthey differ only in the newline at the end\n", name, file)
	}
	fmt.Fprintf(e.stderr, "to store %s: dbrouter push %s --expect-rev %d\n", file, file, rev)
	return exitFail
}

// plural writes n with a noun, plural when n is not 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// sortedList joins names sorted, or says "none".
func sortedList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(slices.Values(names)), ", ")
}
