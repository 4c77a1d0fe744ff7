package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dbrouter/dbrouter"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Defaults applied by New to zero-valued Options fields.
const (
	// DefaultLeaseTTL is the lease of a router's presence, views and
	// candidacy: how long the fleet keeps counting a router that stopped
	// answering, and how long a router goes without etcd before its
	// EtcdLost policy applies.
	DefaultLeaseTTL = 5 * time.Second

	// DefaultDemoteTimeout bounds Options.Demote.
	DefaultDemoteTimeout = time.Second
)

// Timings that are not settings.
const (
	// viewPollInterval is how often a router compares its view of a
	// cluster (WriterSink.Stats) with the one it last published.
	viewPollInterval = 100 * time.Millisecond

	// retryInterval is the pause between two attempts at an etcd
	// operation that failed (a new lease, reading a decision, campaigning).
	retryInterval = 250 * time.Millisecond

	// opTimeout bounds one etcd request of the coordinator (a put, a get,
	// a transaction), so that a hung etcd cannot stall a loop for longer.
	opTimeout = 2 * time.Second
)

// EtcdLostPolicy says what a router does with the writer decisions of its
// clusters while it cannot reach etcd for longer than its lease
// (Options.LeaseTTL): by then its presence and views have expired, the
// fleet decides without it, and it can no longer learn of a new decision.
type EtcdLostPolicy int

// The policies. Whatever the policy, the router goes back to the fleet's
// decisions (reading the current one) as soon as it has a lease again.
const (
	// KeepLastDecision keeps writing to the last decided writer, and never
	// fails over on its own: a whole-etcd outage costs nothing while the
	// writer is healthy, and two routers that both lost etcd never write
	// to different nodes. The risk: a router cut from etcd alone, but not
	// from the old writer, keeps writing there after the fleet has moved
	// on — unless the decider made the old writer read-only on its way out
	// (Options.Demote). A writer that fails meanwhile is not replaced:
	// writes fail until etcd is back. A cluster that had no decision yet
	// (none published, or none read: etcd down since the router started)
	// is on the local rule. It is the default.
	KeepLastDecision EtcdLostPolicy = iota

	// LocalDecisions hands every cluster back to the router's local rule
	// (a WriterDecision with an empty Writer): writes fail over on this
	// router's own evidence, as without a fleet, so the writer may move
	// while etcd is down, but so may a one-sided partition make two routers
	// write to two nodes (the split brain etcd is there to prevent). It
	// applies when etcd is lost, not while etcd answers but the writer
	// key cannot be read (see Coordinator.Watch).
	LocalDecisions

	// RefuseWrites refuses every write (WriterDecision.Refuse): writes fail
	// as not sent, reads go on. It never writes without the fleet's word,
	// at the price of a write outage for as long as etcd is unreachable.
	RefuseWrites
)

// String returns "keep-last", "local" or "refuse".
func (p EtcdLostPolicy) String() string {
	switch p {
	case KeepLastDecision:
		return "keep-last"
	case LocalDecisions:
		return "local"
	case RefuseWrites:
		return "refuse"
	}
	return fmt.Sprintf("EtcdLostPolicy(%d)", int(p))
}

// Options configure a Coordinator. Zero values mean the documented
// default.
type Options struct {
	// Prefix is where the fleet's keys live (see DefaultPrefix); it is
	// cleaned as path.Clean does ("//" and "/./" go) and a "/" is added
	// when it does not end with one. Every router of a fleet must
	// use the same prefix.
	Prefix string

	// RouterID names this router in the fleet; it must be unique among
	// live routers and must not contain "/", control characters, bidi
	// controls, line or paragraph separators or bytes that are not UTF-8. Default: "<hostname>-<pid>".
	// Two live routers with one RouterID share their keys and count as
	// one; a router that finds its presence key held by another live lease
	// logs a warning (a restarted router may find its previous run's).
	RouterID string

	// LeaseTTL is the lease of this router's presence, views and
	// candidacy in the decider election (see DefaultLeaseTTL), rounded up
	// to whole seconds; etcd may raise it to its own minimum (about 2 s
	// with its default timing). It bounds how long a dead router still
	// counts, how long a dead decider blocks failovers, and how long this
	// router goes without etcd before EtcdLost applies.
	LeaseTTL time.Duration

	// EtcdLost is what this router does when it cannot reach etcd for
	// longer than LeaseTTL; KeepLastDecision by default.
	EtcdLost EtcdLostPolicy

	// Demote, when set, is called by the decider before it publishes a
	// new writer in place of an old one, with the old writer's address:
	// it should make that node refuse writes (SET GLOBAL read_only = ON,
	// which needs an account with the SUPER or READ_ONLY ADMIN privilege,
	// not the application's). It fences off routers that cannot learn of
	// the new decision (cut from etcd, under KeepLastDecision) but still
	// reach the old writer. An old writer that is down cannot be reached:
	// Demote's error is logged, put in the decision's cause, and the
	// decision is published anyway. It is bounded by DemoteTimeout: the
	// decider waits no longer, even for a hook that ignores its context
	// (the hook is then left to end by itself).
	Demote func(ctx context.Context, cluster, addr string) error

	// DemoteTimeout bounds one call of Demote; DefaultDemoteTimeout when
	// zero.
	DemoteTimeout time.Duration

	// Logger receives the coordinator's log lines; nil means
	// slog.Default().
	Logger *slog.Logger

	// onVerdict, when set (by tests), is called by the decider with every
	// verdict and the views it was drawn from.
	onVerdict func(cluster string, views []View, v verdict)
}

// Coordinator makes a router one of a fleet that agrees on each cluster's
// writer through etcd; it implements dbrouter.WriterSource (set it as
// Config.WriterSource). For each cluster the router watches, it publishes
// the router's view of the nodes under the router's lease, and applies the
// fleet's writer decisions as they change. Every coordinator also campaigns
// in the decider election; the one elected decides every cluster, by the
// rules of docs/fleet.md. The methods of a Coordinator are safe for
// concurrent use.
type Coordinator struct {
	client *clientv3.Client
	opts   Options
	ttl    int64 // LeaseTTL in whole seconds
	log    *slog.Logger

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// viewPoll is viewPollInterval; tests may shorten it.
	viewPoll time.Duration

	mu      sync.Mutex
	sess    *concurrency.Session // the current session, nil while none
	gen     uint64               // counts sessions: the one watches follow
	changed chan struct{}        // closed, and replaced, when sess changes
	lost    bool                 // without a session for longer than the lease
	watches map[string]*watch    // the current watch of each cluster
	closed  bool
	term    *leaderTerm // while this coordinator is the decider

	lastLease int64 // the lease of the last session, 0 before the first
}

var _ dbrouter.WriterSource = (*Coordinator)(nil)

// New returns a Coordinator that uses client (which it does not close) and
// starts to take part in the fleet: it takes a lease, publishes the
// router's presence and campaigns in the decider election, in the
// background, retrying while etcd cannot be reached. It fails only on bad
// options. Close ends it.
func New(client *clientv3.Client, opts Options) (*Coordinator, error) {
	if client == nil {
		return nil, errors.New("fleet: New: nil etcd client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	opts.Prefix = cleanPrefix(opts.Prefix)
	if opts.RouterID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "router"
		}
		opts.RouterID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if strings.Contains(opts.RouterID, "/") {
		return nil, fmt.Errorf("fleet: New: RouterID %q contains a \"/\"", opts.RouterID)
	}
	if !utf8.ValidString(opts.RouterID) || strings.ContainsFunc(opts.RouterID, func(r rune) bool {
		return unicode.IsControl(r) || r == '\u2800' || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp,
			unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
	}) {
		// It is a key of etcd, a field of RouterInfo's JSON (which would
		// turn invalid bytes into U+FFFD: another name) and a log
		// attribute (where a bidi override or a line separator would
		// garble the line, and a character that shows as nothing — a
		// zero-width space or joiner, a soft hyphen, a BOM: Unicode's
		// format characters and default-ignorable code points, and U+2800
		// BRAILLE PATTERN BLANK, drawn as a blank cell — make two
		// IDs look the same), as cluster names are (see dbrouter's Config).
		return nil, fmt.Errorf("fleet: New: RouterID %q must be valid UTF-8 without control characters, invisible characters (bidi controls, zero-width spaces and joiners, soft hyphens, ...) or line and paragraph separators", opts.RouterID)
	}
	switch {
	case opts.LeaseTTL < 0:
		return nil, fmt.Errorf("fleet: New: negative LeaseTTL %v", opts.LeaseTTL)
	case opts.LeaseTTL == 0:
		opts.LeaseTTL = DefaultLeaseTTL
	}
	switch opts.EtcdLost {
	case KeepLastDecision, LocalDecisions, RefuseWrites:
	default:
		return nil, fmt.Errorf("fleet: New: unknown EtcdLost policy %d", int(opts.EtcdLost))
	}
	if opts.DemoteTimeout <= 0 {
		opts.DemoteTimeout = DefaultDemoteTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ttl := int64((opts.LeaseTTL + time.Second - 1) / time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{
		client:   client,
		opts:     opts,
		ttl:      ttl,
		log:      log.With("router", opts.RouterID),
		ctx:      ctx,
		cancel:   cancel,
		viewPoll: viewPollInterval,
		changed:  make(chan struct{}),
		watches:  make(map[string]*watch),
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.runSessions()
	}()
	return c, nil
}

// RouterID returns the name of this router in the fleet.
func (c *Coordinator) RouterID() string { return c.opts.RouterID }

// IsDecider reports whether this coordinator is the fleet's decider now, as
// far as it knows: one whose lease expired while it was cut from etcd
// learns it within about LeaseTTL, and cannot publish meanwhile (each
// publication checks its election key).
func (c *Coordinator) IsDecider() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.term != nil
}

// Close revokes the router's lease — its presence, views and candidacy go
// at once, and another coordinator takes over deciding if this one was the
// decider — and stops every watch. Decisions already applied stay in force
// in the router; a cluster still in its start-up refusal (see Watch) gets
// the local rule, as a cluster watched after Close. Close does not close
// the etcd client; an election call still under way ends with Close, even
// with etcd down. It returns the error of the revocation, if any (the
// lease then expires by itself).
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	sess := c.sess
	c.sess = nil
	ws := make([]*watch, 0, len(c.watches))
	for _, w := range c.watches {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	// A cluster still in its start-up refusal would refuse writes for
	// good: nothing can end it now. It gets the local rule, as a cluster
	// watched after Close.
	for _, w := range ws {
		w.closed()
	}
	if sess == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.client.Revoke(ctx, sess.Lease()); err != nil {
		return fmt.Errorf("fleet: revoking the lease of router %s: %w", c.opts.RouterID, err)
	}
	return nil
}

// runSessions keeps the router in the fleet: it takes a lease (a session),
// publishes the router's presence under it, campaigns with it, and takes a
// new one when it ends. Without one for longer than the lease, the EtcdLost
// policy applies until the next.
func (c *Coordinator) runSessions() {
	since := time.Now() // when the router last had a session (or started)
	for {
		sess, endCampaigns, err := c.newSession()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			if time.Since(since) >= c.opts.LeaseTTL {
				c.setLost(err)
			}
			if !c.sleep(retryInterval) {
				return
			}
			continue
		}
		c.setSession(sess)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.campaign(sess)
		}()
		select {
		case <-sess.Done():
			// The lease expired, or was revoked: either etcd did not answer
			// its keepalives for the lease's TTL, or it answers and says so.
			// The next attempt tells which: if it fails, the router has been
			// without etcd for a lease already.
			endCampaigns() // the lease is gone, and its candidacy with it
			c.setSession(nil)
			since = time.Now().Add(-c.opts.LeaseTTL)
			c.log.Warn("fleet: lease ended", "lease", fmt.Sprintf("%x", int64(sess.Lease())))
		case <-c.ctx.Done():
			endCampaigns()
			sess.Orphan() // Close revokes the lease
			c.mu.Lock()
			c.sess = sess
			c.mu.Unlock()
			return
		}
	}
}

// newSession grants a lease, keeps it alive, and publishes the router's
// presence under it. The session's client is the coordinator's, under a
// context of its own (see sessionClient): endCampaigns ends that context,
// and with it an election call still under way; call it once the session
// has ended.
func (c *Coordinator) newSession() (sess *concurrency.Session, endCampaigns context.CancelFunc, err error) {
	ctx, cancel := context.WithTimeout(c.ctx, min(c.opts.LeaseTTL/2, opTimeout))
	defer cancel()
	lease, err := c.client.Grant(ctx, c.ttl)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: granting a lease: %w", err)
	}
	cli, endCampaigns := c.sessionClient()
	sess, err = concurrency.NewSession(cli, concurrency.WithLease(lease.ID), concurrency.WithContext(c.ctx))
	if err != nil {
		endCampaigns()
		c.revoke(lease.ID)
		return nil, nil, fmt.Errorf("fleet: keeping the lease alive: %w", err)
	}
	host, _ := os.Hostname()
	info, _ := json.Marshal(RouterInfo{ID: c.opts.RouterID, Host: host, PID: os.Getpid(), Started: time.Now().UTC()})
	key := RouterKey(c.opts.Prefix, c.opts.RouterID)
	// The previous value tells whether another live lease holds the key:
	// another router with this RouterID (the fleet would count the two as
	// one), or this router's previous run, whose lease has not expired yet.
	resp, err := c.client.Put(ctx, key, string(info), clientv3.WithLease(lease.ID), clientv3.WithPrevKV())
	if err == nil && resp.PrevKv != nil && resp.PrevKv.Lease != 0 && resp.PrevKv.Lease != int64(lease.ID) && !c.ownLease(resp.PrevKv.Lease) {
		var prev RouterInfo
		_ = json.Unmarshal(resp.PrevKv.Value, &prev)
		c.log.Warn("fleet: RouterID in use by another live router (or by this router's previous run, until its lease expires): router IDs must be unique, or the fleet counts the routers as one",
			"other_host", prev.Host, "other_pid", prev.PID, "other_started", prev.Started)
	}
	if err != nil {
		sess.Orphan()
		endCampaigns()
		c.revoke(lease.ID)
		return nil, nil, fmt.Errorf("fleet: publishing the router's presence: %w", err)
	}
	return sess, endCampaigns, nil
}

// sessionClient returns a client for a session and its election: the
// coordinator's client's services (its connection, authentication and
// namespace, if any) under a context that ends with end or Close. etcd's
// Election.Campaign, once its ctx ends, resigns with its client's own
// context (Client.Ctx), which for the application's client ends only when
// that client is closed: with etcd down, every Close (and every lost
// lease) left a Campaign goroutine behind until etcd answered
// (TestReviewEdgesCloseEndsCampaign). Resigning then is pointless
// anyway: the candidacy lives on the session's lease, which has ended or
// which Close revokes. The returned client must never be closed: its
// Close would close the application client's Watcher and Lease.
func (c *Coordinator) sessionClient() (cli *clientv3.Client, end context.CancelFunc) {
	ctx, end := context.WithCancel(c.ctx)
	cli = clientv3.NewCtxClient(ctx, clientv3.WithZapLogger(c.client.GetLogger()))
	cli.Cluster, cli.KV, cli.Lease = c.client.Cluster, c.client.KV, c.client.Lease
	cli.Watcher, cli.Auth, cli.Maintenance = c.client.Watcher, c.client.Auth, c.client.Maintenance
	return cli, end
}

// ownLease reports whether id is the lease of this coordinator's session
// (the one that ended: its keys may outlive it briefly).
func (c *Coordinator) ownLease(id int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastLease == id
}

// revoke revokes a lease, best effort.
func (c *Coordinator) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c.client.Revoke(ctx, id)
}

// setSession makes sess the current session (nil: none) and wakes the
// watches.
func (c *Coordinator) setSession(sess *concurrency.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess = sess
	if sess != nil {
		c.lastLease = int64(sess.Lease())
		c.gen++
		if c.lost {
			c.log.Info("fleet: etcd reachable again: following the fleet's decisions")
		}
		c.lost = false
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// current returns the current session (nil: none), its generation, and a
// channel closed when it changes.
func (c *Coordinator) current() (*concurrency.Session, uint64, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess, c.gen, c.changed
}

// setLost applies the EtcdLost policy to every watch, once per loss.
func (c *Coordinator) setLost(cause error) {
	c.mu.Lock()
	if c.lost || c.closed {
		c.mu.Unlock()
		return
	}
	c.lost = true
	ws := make([]*watch, 0, len(c.watches))
	for _, w := range c.watches {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	c.log.Warn("fleet: etcd unreachable for longer than the lease", "policy", c.opts.EtcdLost.String(), "err", cause)
	for _, w := range ws {
		w.applyLost()
	}
}

// sleep waits for d, or until Close; it reports whether Close has not
// been called.
func (c *Coordinator) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// sessionContext returns a context that ends when ctx does or when sess
// ends.
func sessionContext(ctx context.Context, sess *concurrency.Session) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Watch starts following the fleet's writer decisions for a cluster, whose
// nodes are given in configured order, and publishing this router's view
// of them (from sink.Stats). It does not block; stop ends both and removes
// the view in the background, without waiting for etcd (with etcd
// unreachable the view goes with the lease). A later Watch of the same cluster name (a Reload that rebuilt
// the cluster) takes over publishing the view; the earlier one still
// follows decisions until stopped. After Close, Watch does nothing.
//
// Watch first refuses the cluster's writes (not sent: a
// *dbrouter.NoNodeError matching dbrouter.ErrNotSent; reads go on) until
// the first read of the cluster's writer key: that read hands the cluster
// the fleet's writer, or, when the fleet has decided none yet, the local
// rule. Without etcd, the refusal lasts until the EtcdLost policy applies
// (about one LeaseTTL after New, or after the last session ended): under
// KeepLastDecision and LocalDecisions the local rule then applies (there
// is no last decision; for a cluster rebuilt by a Reload, KeepLastDecision
// keeps the last decision the earlier watch of the cluster applied), under
// RefuseWrites writes stay refused. Close ends the refusal (local rule).
//
// A read that fails with etcd answering (permission denied, a value that
// is no decision) is retried every 250 ms; the refusal's cause, a
// warning, Status and the published view name the key and the error. Once
// LeaseTTL has passed since Watch without a read, KeepLastDecision and
// LocalDecisions keep the earlier watch's decision if there is one, and
// otherwise, as RefuseWrites, writes stay refused until a read succeeds:
// the router is live in the fleet, whose other routers follow etcd, so
// its local rule could make a second writer without any fault. Reads that fail for LeaseTTL after a decision
// was applied leave it in force, except under RefuseWrites, which refuses
// writes until a read succeeds. A session that follows one the EtcdLost
// policy ended with no decision read starts with the refusal again.
//
// A cluster name that cannot name etcd keys unchanged (with an empty, "." or
// ".." path segment, or a leading or trailing "/") is not watched: its
// cluster refuses writes, with a cause that says so.
func (c *Coordinator) Watch(cluster string, nodes []string, sink dbrouter.WriterSink) (stop func()) {
	if !keySafe(cluster) {
		// path.Join would clean the name into another key: the writer key of
		// ".." is the prefix itself, "c/" shares every key with "c".
		cause := fmt.Sprintf("fleet: cluster name %q cannot name etcd keys (an empty, \".\" or \"..\" path segment, or a leading or trailing \"/\"): writes refused; rename the cluster", cluster)
		c.log.Error("fleet: cluster not watched", "cluster", cluster, "why", cause)
		if err := sink.Decide(dbrouter.WriterDecision{Refuse: true, Cause: cause}); err != nil {
			c.log.Error("fleet: refusal not applied", "cluster", cluster, "err", err)
		}
		return func() {}
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return func() {}
	}
	// Until the first read of the writer key (or the EtcdLost policy),
	// the fleet's word is unknown: the local rule could pick a writer the
	// fleet moved off (a healthy old writer, not demoted). Refuse writes
	// (not sent; reads go on) before the watch can decide anything else.
	ctx, cancel := context.WithCancel(c.ctx)
	w := &watch{c: c, cluster: cluster, nodes: append([]string(nil), nodes...), sink: sink,
		ctx: ctx, cancel: cancel, done: make(chan struct{}), pending: true, started: time.Now()}
	w.mu.Lock()
	if err := w.decideLocked(dbrouter.WriterDecision{Refuse: true, Cause: startCause}); err != nil {
		c.log.Error("fleet: start-up refusal not applied", "cluster", cluster, "err", err)
	}
	w.mu.Unlock()
	c.mu.Lock()
	if c.closed {
		// Close came meanwhile: as a Watch after Close, the local rule.
		c.mu.Unlock()
		cancel()
		w.closed()
		return func() {}
	}
	if prev := c.watches[cluster]; prev != nil {
		// A rebuilt cluster (Reload): under KeepLastDecision, the decision
		// its earlier watch applied is the last one to keep if etcd is
		// lost before this watch reads one (set before setLost can see w).
		w.inherited = prev.lastDecision()
	}
	c.watches[cluster] = w
	lost := c.lost
	c.wg.Add(1)
	c.mu.Unlock()
	if lost {
		w.applyLost()
	}
	go func() {
		defer c.wg.Done()
		defer close(w.done)
		w.run()
	}()
	var once sync.Once
	return func() { once.Do(w.stop) }
}

// startCause is the cause of the refusal a watched cluster starts with.
const startCause = "fleet: the writer decision has not been read from etcd yet: writes refused until it is (or until the EtcdLost policy applies)"

// keySafe reports whether a cluster name survives path.Join unchanged
// as a key segment (a "/" inside is fine: "eu/customers").
func keySafe(cluster string) bool {
	return cluster != "" && path.Join("x", cluster) == "x/"+cluster
}

// Status is what a Coordinator knows of its part in the fleet, for an
// operator (a health or debug endpoint); dbrouter status shows the same
// per cluster from the views the routers publish.
type Status struct {
	RouterID string
	// Session reports whether the router holds a lease now: it is live in
	// the fleet, and follows decisions.
	Session bool
	// EtcdLost reports whether the EtcdLost policy is in force: no lease
	// for longer than LeaseTTL.
	EtcdLost bool
	// Decider reports whether this coordinator is the fleet's decider, as
	// far as it knows (see IsDecider).
	Decider bool
	// Clusters are the clusters the router watches, by name.
	Clusters []ClusterStatus
}

// ClusterStatus is a Coordinator's state of one cluster it watches.
type ClusterStatus struct {
	Cluster string
	// Writer, Refused and Cause are those of the last writer decision the
	// coordinator handed the cluster: Writer "" and Refused false is the
	// local rule; Refused is set while writes are refused (the start-up
	// refusal, an unreadable decision, a decision naming a node the
	// cluster lacks, EtcdLost RefuseWrites), and Cause says why — the text
	// the refused writes' errors carry.
	Writer  string
	Refused bool
	Cause   string
	// Epoch is that of the last fleet decision applied (0: none).
	Epoch uint64
	// ReadError is the error of the reads of the cluster's writer key while
	// they fail — an etcd error (permission denied, a timeout) or a value
	// that is no decision — since ReadErrorSince; "" once a read succeeds.
	ReadError      string
	ReadErrorSince time.Time
}

// Status returns the coordinator's state: its session, and each watched
// cluster's writer decision and, while they fail, the error of the reads
// of its writer key.
func (c *Coordinator) Status() Status {
	c.mu.Lock()
	st := Status{RouterID: c.opts.RouterID, Session: c.sess != nil && !c.closed, EtcdLost: c.lost, Decider: c.term != nil}
	ws := make([]*watch, 0, len(c.watches))
	for _, w := range c.watches {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		st.Clusters = append(st.Clusters, w.status())
	}
	slices.SortFunc(st.Clusters, func(a, b ClusterStatus) int { return strings.Compare(a.Cluster, b.Cluster) })
	return st
}

// clusterNodes returns the nodes of the clusters this router watches.
func (c *Coordinator) clusterNodes() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string][]string, len(c.watches))
	for name, w := range c.watches {
		m[name] = w.nodes
	}
	return m
}
