package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/fleet"
)

// cmdSwitchover publishes a decision that moves CLUSTER's writer to NODE for
// the whole fleet (fleet.Switchover). With -config FILE, the old writer is
// made read-only and NODE caught up first, with FILE's credentials
// (fleet.SwitchoverWith and fleet.SQLHooks); no password is printed.
func cmdSwitchover(e *env, args []string) int {
	cluster, to := args[0], args[1]
	var opts *fleet.SwitchoverOptions
	var secrets []string
	if e.config != "" {
		cfg, err := dbrouter.LoadConfig(e.config)
		if err != nil {
			return e.fail("switchover", err)
		}
		secrets = configSecrets(cfg)
		if _, ok := cfg.Clusters[cluster]; !ok {
			return e.fail("switchover", fmt.Errorf("no cluster %q in %s: -config must name the nodes' credentials", cluster, e.config))
		}
		if opts, err = fleet.SQLHooks(cfg); err != nil {
			return e.fail("switchover", err)
		}
		// Within --timeout: the demotion and the catch-up share it.
		if dl, ok := e.ctx.Deadline(); ok {
			opts.CatchUpTimeout = max(time.Until(dl)/2, time.Millisecond)
		}
	}
	cli, err := e.etcd()
	if err != nil {
		return e.fail("switchover", err)
	}
	d, err := fleet.SwitchoverWith(e.ctx, cli, e.prefix, cluster, to, operator(), opts)
	if err != nil {
		return e.fail("switchover", errors.New(scrubSecrets(e.etcdErr(err).Error(), secrets)))
	}
	how := "every router moves through its fence"
	if opts != nil {
		how = "the old writer is read-only and " + to + " had caught up; every router moves through its fence"
	}
	fmt.Fprintf(e.stdout, "cluster %s: writer %s from epoch %d (%s); %s: check with dbrouter status\n",
		cluster, d.Writer, d.Epoch, d.Cause, how)
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
