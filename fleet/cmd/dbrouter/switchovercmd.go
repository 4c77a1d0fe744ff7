package main

import (
	"fmt"
	"os"
	"os/user"

	"github.com/dbrouter/dbrouter/fleet"
)

// cmdSwitchover publishes a decision that moves CLUSTER's writer to NODE for
// the whole fleet (fleet.Switchover).
func cmdSwitchover(e *env, args []string) int {
	cluster, to := args[0], args[1]
	cli, err := e.etcd()
	if err != nil {
		return e.fail("switchover", err)
	}
	d, err := fleet.Switchover(e.ctx, cli, e.prefix, cluster, to, operator())
	if err != nil {
		return e.fail("switchover", e.etcdErr(err))
	}
	fmt.Fprintf(e.stdout, "cluster %s: writer %s from epoch %d (%s); every router moves through its fence: check with dbrouter status\n",
		cluster, d.Writer, d.Epoch, d.Cause)
	return exitOK
}

// operator names who runs the command: user@host.
func operator() string {
	name := "operator"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name
}
