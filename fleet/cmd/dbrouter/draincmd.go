package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dbrouter/dbrouter/fleet"
)

// cmdDrain takes NODE out of service for the whole fleet (fleet.Drain) and
// waits, within --timeout, until the writer decision has moved off it and
// every live router shows it drained (fleet.WaitDrained).
func cmdDrain(e *env, args []string) int {
	cluster, node := args[0], args[1]
	cli, err := e.etcd()
	if err != nil {
		return e.fail("drain", err)
	}
	if err := fleet.Drain(e.ctx, cli, e.prefix, cluster, node, operator()); err != nil {
		return e.fail("drain", e.etcdErr(err))
	}
	if e.afterDrain != nil {
		e.afterDrain()
	}
	st, err := fleet.WaitDrained(e.ctx, cli, e.prefix, cluster, node)
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			return e.fail("drain", fmt.Errorf("cluster %s: %s is drained in etcd, but waiting for the fleet to follow failed: %w", cluster, node, err))
		}
		return e.fail("drain", fmt.Errorf("cluster %s: %s is drained in etcd, but timed out after %v (--timeout) waiting for the fleet to follow: %s; the key stays and the routers follow when they can: check with dbrouter status",
			cluster, node, e.timeout, drainProgress(node, st)))
	}
	fmt.Fprintf(e.stdout, "cluster %s: %s drained by every live router; writer %s\n", cluster, node, orDash(oneLine(st.Writer)))
	return exitOK
}

// drainProgress says how far the fleet had followed the drain of node
// when the wait for it ended: the writer decision, the decider and the
// routers that have not followed, as last read, or that they are unknown.
func drainProgress(node string, st fleet.DrainState) string {
	if !st.Read {
		return "etcd could not be read meanwhile: writer unknown, decider unknown, routers unknown"
	}
	var b strings.Builder
	switch {
	case st.DecisionError != "":
		fmt.Fprintf(&b, "writer decision unreadable (%s): the routers keep the writer they use, or refuse writes, until the decider replaces it", oneLine(st.DecisionError))
	case st.Writer == node:
		fmt.Fprintf(&b, "the writer decision still names %s", node)
	case st.Writer == "":
		b.WriteString("no writer decision published (each router on its local rule)")
	default:
		fmt.Fprintf(&b, "writer %s", oneLine(st.Writer))
	}
	switch {
	case st.Writer != "" && st.DecidedBy != "":
		fmt.Fprintf(&b, " (epoch %d, published by %s)", st.Epoch, oneLine(st.DecidedBy))
	case st.Writer != "":
		fmt.Fprintf(&b, " (epoch %d)", st.Epoch)
	}
	if st.Decider == "" {
		b.WriteString("; no decider elected (no coordinator is campaigning)")
	} else {
		fmt.Fprintf(&b, "; decider %s", oneLine(st.Decider))
	}
	if len(st.Pending) == 0 {
		fmt.Fprintf(&b, "; every live router shows %s drained", node)
	} else {
		pending := make([]string, len(st.Pending))
		for i, id := range st.Pending {
			pending[i] = oneLine(id)
		}
		fmt.Fprintf(&b, "; not yet drained by %s", strings.Join(pending, ", "))
	}
	return b.String()
}

// cmdUndrain puts NODE back in service for the whole fleet (fleet.Undrain).
func cmdUndrain(e *env, args []string) int {
	cluster, node := args[0], args[1]
	cli, err := e.etcd()
	if err != nil {
		return e.fail("undrain", err)
	}
	was, err := fleet.Undrain(e.ctx, cli, e.prefix, cluster, node)
	if err != nil {
		return e.fail("undrain", e.etcdErr(err))
	}
	if !was {
		fmt.Fprintf(e.stdout, "cluster %s: %s was not drained\n", cluster, node)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "cluster %s: %s back in service for every router (the writer stays where it is)\n", cluster, node)
	return exitOK
}
