package main

import (
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
	st, err := fleet.WaitDrained(e.ctx, cli, e.prefix, cluster, node)
	if err != nil {
		writer := st.Writer
		if writer == "" {
			writer = "none decided"
		}
		return e.fail("drain", fmt.Errorf("cluster %s: %s is drained in etcd, but within %v (--timeout) the fleet has not followed: writer %s, not yet drained by %s; check with dbrouter status",
			cluster, node, e.timeout, writer, orDash(strings.Join(st.Pending, ", "))))
	}
	fmt.Fprintf(e.stdout, "cluster %s: %s drained by every live router; writer %s\n", cluster, node, orDash(st.Writer))
	return exitOK
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
