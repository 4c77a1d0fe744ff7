package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/dbrouter/dbrouter/fleet"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.yaml.in/yaml/v3"
)

// fleetState is what status reads from etcd, all at one revision.
type fleetState struct {
	rev       int64
	configRev int64               // 0: no configuration
	nodes     map[string][]string // cluster → its nodes as configured, normalised
	decisions map[string]decision // cluster → its writer decision
	routers   map[string]router   // router ID → what it publishes about itself
	views     map[string]map[string]view
	decider   string // the value the elected decider campaigned with; "" if none
	notes     []string
}

// decision, router and view are values read from etcd, or why they could
// not be decoded.
type (
	decision struct {
		fleet.Decision
		err error
	}
	router struct {
		fleet.RouterInfo
		err error
	}
	view struct {
		fleet.View
		err error
	}
)

// listPrefix returns the prefix under which the keys that key(prefix, x)
// makes for every x live: "<prefix>routers/" from RouterKey, and so on.
// It derives it from the key functions of package fleet, which define the
// layout.
func listPrefix(key func(x string) string) string {
	const probe = "x"
	return strings.TrimSuffix(key(probe), probe)
}

// readState reads the fleet's keys in one transaction, so that every part
// of the status is of the same revision.
func readState(ctx context.Context, cli *clientv3.Client, prefix string) (*fleetState, error) {
	writers := listPrefix(func(x string) string { return fleet.WriterKey(prefix, x) })
	routers := listPrefix(func(x string) string { return fleet.RouterKey(prefix, x) })
	views := listPrefix(func(x string) string { return strings.TrimSuffix(fleet.ViewsPrefix(prefix, x), "/") })
	election := fleet.ElectionKey(prefix) + "/" // concurrency.Election's keys: <pfx>/<lease>
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(fleet.ConfigKey(prefix)),
		clientv3.OpGet(writers, clientv3.WithPrefix()),
		clientv3.OpGet(routers, clientv3.WithPrefix()),
		clientv3.OpGet(views, clientv3.WithPrefix()),
		clientv3.OpGet(election, clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1)),
	).Commit()
	if err != nil {
		return nil, err
	}
	s := &fleetState{rev: resp.Header.Revision, nodes: map[string][]string{}, decisions: map[string]decision{},
		routers: map[string]router{}, views: map[string]map[string]view{}}
	get := func(i int) *clientv3.GetResponse {
		return (*clientv3.GetResponse)(resp.Responses[i].GetResponseRange())
	}
	if kvs := get(0).Kvs; len(kvs) > 0 {
		s.configRev = kvs[0].ModRevision
		s.readConfig(kvs[0].Value)
	}
	for _, kv := range get(1).Kvs {
		var d decision
		d.err = json.Unmarshal(kv.Value, &d.Decision)
		if d.err == nil && d.Epoch == 0 {
			// As the routers and the decider read it: no decision ("{}",
			// or a writer without an epoch, decode to one).
			d.err = fmt.Errorf("%.200q has no epoch (the fleet publishes none below 1): no decision; the routers keep the writer they use, or refuse writes, until the decider replaces it", kv.Value)
		}
		s.decisions[strings.TrimPrefix(string(kv.Key), writers)] = d
	}
	for _, kv := range get(2).Kvs {
		var r router
		r.err = json.Unmarshal(kv.Value, &r.RouterInfo)
		s.routers[strings.TrimPrefix(string(kv.Key), routers)] = r
	}
	for _, kv := range get(3).Kvs {
		rest := strings.TrimPrefix(string(kv.Key), views)
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			continue
		}
		cluster, id := rest[:i], rest[i+1:]
		var v view
		v.err = json.Unmarshal(kv.Value, &v.View)
		if s.views[cluster] == nil {
			s.views[cluster] = map[string]view{}
		}
		s.views[cluster][id] = v
	}
	if kvs := get(4).Kvs; len(kvs) > 0 {
		s.decider = string(kvs[0].Value)
	}
	return s, nil
}

// readConfig takes the clusters' nodes from the stored configuration,
// leniently: status shows what it can of a configuration the routers
// rejected, and does not expand ${VAR}.
func (s *fleetState) readConfig(data []byte) {
	var doc struct {
		Clusters map[string]struct {
			Nodes []string `yaml:"nodes"`
		} `yaml:"clusters"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		s.notes = append(s.notes, "the stored configuration is not valid YAML: clusters are listed from what the routers publish")
		return
	}
	for name, c := range doc.Clusters {
		nodes := make([]string, len(c.Nodes))
		for i, n := range c.Nodes {
			nodes[i] = normalizeNode(n)
		}
		s.nodes[name] = nodes
	}
}

// normalizeNode spells a node address as the routers do: host:port, port
// 3306 when omitted.
func normalizeNode(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), "3306"
	}
	if p, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(p)
	}
	return net.JoinHostPort(host, port)
}

// clusters returns the names of every cluster the state knows of, sorted.
func (s *fleetState) clusters() []string {
	var names []string
	for name := range s.nodes {
		names = append(names, name)
	}
	for name := range s.decisions {
		names = append(names, name)
	}
	for name := range s.views {
		names = append(names, name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// cmdStatus prints the fleet's state per cluster; with -config, what a
// router opened from that file sees (cmdLocalStatus).
func cmdStatus(e *env, _ []string) int {
	if e.config != "" {
		return cmdLocalStatus(e)
	}
	cli, err := e.etcd()
	if err != nil {
		return e.fail("status", err)
	}
	s, err := readState(e.ctx, cli, e.prefix)
	if err != nil {
		return e.fail("status", e.etcdErr(err))
	}
	clusters := s.clusters()
	if e.cluster != "" {
		if !slices.Contains(clusters, e.cluster) {
			return e.fail("status", fmt.Errorf("no cluster %q in etcd under %s (known: %s)", e.cluster, e.prefix, sortedList(clusters)))
		}
		clusters = []string{e.cluster}
	}
	s.write(e.stdout, e.endpoints, e.prefix, clusters, e.now())
	return exitOK
}

// write prints the status of the named clusters as tables.
func (s *fleetState) write(w io.Writer, endpoints, prefix string, clusters []string, now time.Time) {
	fmt.Fprintf(w, "fleet %s on etcd %s, revision %d\n", prefix, endpoints, s.rev)
	if s.configRev == 0 {
		fmt.Fprintln(w, "configuration: none stored")
	} else {
		fmt.Fprintf(w, "configuration: revision %d, %s\n", s.configRev, plural(len(s.nodes), "cluster"))
	}
	for _, n := range s.notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if s.decider == "" {
		fmt.Fprintln(w, "decider: none elected")
	} else {
		fmt.Fprintf(w, "decider: %s\n", oneLine(s.decider))
	}
	ids := slices.Sorted(maps.Keys(s.routers))
	fmt.Fprintf(w, "routers: %d live\n", len(ids))
	if len(ids) > 0 {
		tw := newTable(w)
		fmt.Fprintln(tw, "  ROUTER\tHOST\tPID\tSTARTED")
		for _, id := range ids {
			r := s.routers[id]
			if r.err != nil {
				fmt.Fprintf(tw, "  %s\t(unreadable: %v)\t\t\n", oneLine(id), r.err)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", oneLine(id), oneLine(r.Host), r.PID, stamp(r.Started, now))
		}
		tw.Flush()
	}
	for _, name := range clusters {
		fmt.Fprintln(w)
		s.writeCluster(w, name, now)
	}
	if len(clusters) == 0 {
		fmt.Fprintln(w, "\nno cluster: no configuration, decision or view is stored under", prefix)
	}
}

// writeCluster prints one cluster: its writer decision, then each node's
// view by each router.
func (s *fleetState) writeCluster(w io.Writer, name string, now time.Time) {
	configured, inConfig := s.nodes[name]
	head := "cluster " + oneLine(name)
	if !inConfig && s.configRev != 0 {
		head += " (not in the configuration)"
	}
	d, decided := s.decisions[name]
	switch {
	case !decided:
		fmt.Fprintf(w, "%s: no writer decision published (each router uses its local rule)\n", head)
	case d.err != nil:
		fmt.Fprintf(w, "%s: writer decision unreadable: %v\n", head, d.err)
	case d.Writer == "":
		fmt.Fprintf(w, "%s: epoch %d, writer handed back to each router's local rule\n", head, d.Epoch)
	default:
		fmt.Fprintf(w, "%s: writer %s, epoch %d\n", head, oneLine(d.Writer), d.Epoch)
	}
	if decided && d.err == nil {
		line := fmt.Sprintf("  decided %s", stamp(d.At, now))
		if d.Decider != "" {
			line += " by " + oneLine(d.Decider)
		}
		if d.GTID != "" {
			line += ", gtid " + oneLine(d.GTID)
		}
		if d.Cause != "" {
			line += ": " + oneLine(d.Cause)
		}
		fmt.Fprintln(w, line)
	}

	views := s.views[name]
	nodes := slices.Clone(configured)
	extra := map[string]bool{}
	for _, v := range views {
		for _, n := range v.Nodes {
			if !slices.Contains(nodes, n.Addr) {
				extra[n.Addr] = true
			}
		}
	}
	if decided && d.Writer != "" && !slices.Contains(nodes, d.Writer) {
		extra[d.Writer] = true
	}
	nodes = append(nodes, slices.Sorted(maps.Keys(extra))...)
	routerIDs := slices.Sorted(maps.Keys(views))

	tw := newTable(w)
	fmt.Fprintln(tw, "  NODE\tROUTER\tSTATE\tREAD_ONLY\tGTID\tAGE\tERROR")
	for _, addr := range nodes {
		label := oneLine(addr)
		if decided && d.err == nil && addr == d.Writer {
			label += " (writer)"
		}
		if inConfig && extra[addr] {
			label += " (not configured)"
		}
		rows := 0
		for _, id := range routerIDs {
			v := views[id]
			who := oneLine(id)
			if _, live := s.routers[id]; !live {
				who += " (gone)"
			}
			if v.err != nil {
				continue // listed below the table
			}
			i := slices.IndexFunc(v.Nodes, func(n fleet.NodeView) bool { return n.Addr == addr })
			if i < 0 {
				continue
			}
			n := v.Nodes[i]
			state := orDash(oneLine(n.State))
			if n.Drained {
				state += " (drained)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", label, who, state, yesNo(n.ReadOnly),
				orDash(oneLine(n.GTID)), age(v.At, now), oneLine(n.Error))
			label, rows = "", rows+1
		}
		if rows == 0 {
			fmt.Fprintf(tw, "  %s\t-\tno view\t\t\t\t\n", label)
		}
	}
	tw.Flush()
	for _, id := range routerIDs {
		v := views[id]
		who := oneLine(id)
		if _, live := s.routers[id]; !live {
			who += " (gone)"
		}
		switch {
		case v.err != nil:
			fmt.Fprintf(w, "  view of %s unreadable: %v\n", oneLine(id), v.err)
		case v.Refused != "":
			// The refusal's cause says why, the read error included.
			fmt.Fprintf(w, "  %s refuses writes: %s\n", who, oneLine(v.Refused))
		case v.ReadError != "":
			fmt.Fprintf(w, "  %s cannot read the writer decision: %s\n", who, oneLine(v.ReadError))
		}
	}
	var silent []string
	for _, id := range slices.Sorted(maps.Keys(s.routers)) {
		if _, ok := views[id]; !ok {
			silent = append(silent, oneLine(id))
		}
	}
	if len(silent) > 0 {
		fmt.Fprintf(w, "  no view from: %s\n", strings.Join(silent, ", "))
	}
}

// table aligns tab-separated cells in columns, as text/tabwriter does,
// without the spaces tabwriter leaves after a row's last cell.
type table struct {
	w   io.Writer
	buf bytes.Buffer
	tw  *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	return t
}

func (t *table) Write(p []byte) (int, error) { return t.tw.Write(p) }

// Flush writes the table out.
func (t *table) Flush() {
	t.tw.Flush()
	for _, line := range strings.SplitAfter(t.buf.String(), "\n") {
		if line != "" {
			io.WriteString(t.w, strings.TrimRight(line, " \n")+"\n")
		}
	}
	t.buf.Reset()
}

// stamp formats a time in UTC with how long ago it was.
func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + age(t, now) + " ago)"
}

// age formats now - t coarsely: "4s", "3m", "2h", "5d".
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a value read from etcd on one line and inert on a
// terminal: its runs of white space (newlines, tabs, carriage returns)
// become one space, and the control characters, bidi controls and line
// or paragraph separators left (a terminal escape, a bidi override) are
// shown escaped as Go quotes them ("\x1b", "\u202e"). Any client that may
// write under the prefix can store such a value
// (TestReviewEdges2HostileValuesInStatusAndDrain).
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if !strings.ContainsFunc(s, unprintable) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unprintable(r) {
			q := strconv.QuoteRune(r)
			if q == "'"+string(r)+"'" {
				// Printable to strconv, blank to the eye (U+2800).
				q = fmt.Sprintf("'\\u%04x'", r)
			}
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unprintable reports whether r must not reach a terminal as is: a
// control character, a line or paragraph separator, or a character that
// shows as nothing or as a blank (format characters — bidi controls, zero
// widths —, variation selectors, other default-ignorable code points,
// U+2800): the rule fleet.New applies to router IDs.
func unprintable(r rune) bool {
	return unicode.IsControl(r) || r == '\u2800' || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp,
		unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}
