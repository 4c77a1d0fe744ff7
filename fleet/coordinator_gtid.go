package fleet

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// position is a replication position as views carry it: MariaDB's
// @@gtid_current_pos ("0-1-100,2-3-57": per domain, the last sequence
// number) or MySQL's @@gtid_executed ("uuid:1-100:200,uuid2:tag:1-3": per
// source and tag, the transaction intervals). Only what containment needs
// is kept. The zero position is empty, and every position contains it.
type position struct {
	mariadb map[uint32]mariadbGTID // domain → its highest GTID
	mysql   map[string][]interval  // "uuid" or "uuid:tag" → sorted, disjoint intervals
}

// mariadbGTID is the server id and sequence number of a MariaDB GTID.
type mariadbGTID struct {
	server uint32
	seq    uint64
}

// later returns the later of two GTIDs of one domain.
func later(a, b mariadbGTID) mariadbGTID {
	if b.seq > a.seq {
		return b
	}
	return a
}

// interval is the transaction numbers lo to hi, both included.
type interval struct{ lo, hi uint64 }

// parsePosition parses a MariaDB or MySQL position, telling them apart by
// MySQL's ":".
func parsePosition(s string) (position, error) {
	s = strings.Join(strings.Fields(s), "")
	var p position
	if s == "" {
		return p, nil
	}
	if !strings.Contains(s, ":") {
		p.mariadb = map[uint32]mariadbGTID{}
		for _, part := range strings.Split(s, ",") {
			f := strings.Split(part, "-")
			if len(f) != 3 {
				return p, fmt.Errorf("bad MariaDB GTID %q", part)
			}
			d, err1 := strconv.ParseUint(f[0], 10, 32)
			srv, err2 := strconv.ParseUint(f[1], 10, 32)
			seq, err3 := strconv.ParseUint(f[2], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				return p, fmt.Errorf("bad MariaDB GTID %q", part)
			}
			p.mariadb[uint32(d)] = later(p.mariadb[uint32(d)], mariadbGTID{uint32(srv), seq})
		}
		return p, nil
	}
	p.mysql = map[string][]interval{}
	for _, set := range strings.Split(s, ",") {
		elems := strings.Split(set, ":")
		uuid := strings.ToLower(elems[0])
		if len(elems) < 2 || len(strings.ReplaceAll(uuid, "-", "")) != 32 {
			return p, fmt.Errorf("bad MySQL GTID set %q", set)
		}
		source := uuid
		for _, e := range elems[1:] {
			lo, hi, isRange := strings.Cut(e, "-")
			a, err := strconv.ParseUint(lo, 10, 64)
			if err != nil {
				// Not a number: a tag (MySQL 8.3+) for the intervals after it.
				if e == "" || strings.ContainsAny(e, "-") {
					return p, fmt.Errorf("bad MySQL GTID set %q", set)
				}
				source = uuid + ":" + strings.ToLower(e)
				continue
			}
			b := a
			if isRange {
				if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
					return p, fmt.Errorf("bad MySQL GTID interval %q", e)
				}
			}
			p.mysql[source] = append(p.mysql[source], interval{a, b})
		}
	}
	for k, ivs := range p.mysql {
		p.mysql[k] = mergeIntervals(ivs)
	}
	return p, nil
}

// mergeIntervals sorts intervals and joins those that overlap or touch.
func mergeIntervals(ivs []interval) []interval {
	slices.SortFunc(ivs, func(a, b interval) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var out []interval
	for _, iv := range ivs {
		if n := len(out); n > 0 && iv.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, iv.hi)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// merge adds o to p: p then holds every transaction of either.
func (p *position) merge(o position) {
	if len(o.mariadb) > 0 && p.mariadb == nil {
		p.mariadb = map[uint32]mariadbGTID{}
	}
	for d, g := range o.mariadb {
		p.mariadb[d] = later(p.mariadb[d], g)
	}
	if len(o.mysql) > 0 && p.mysql == nil {
		p.mysql = map[string][]interval{}
	}
	for k, ivs := range o.mysql {
		p.mysql[k] = mergeIntervals(append(slices.Clone(p.mysql[k]), ivs...))
	}
}

// contains reports whether p holds every transaction of o.
func (p position) contains(o position) bool {
	for d, g := range o.mariadb {
		if have, ok := p.mariadb[d]; !ok || have.seq < g.seq {
			return false
		}
	}
	for k, ivs := range o.mysql {
		for _, iv := range ivs {
			if !covers(p.mysql[k], iv) {
				return false
			}
		}
	}
	return true
}

// lacks returns how many transactions of o p does not hold: per MariaDB
// domain, how far p's sequence number is behind o's; per MySQL source, the
// numbers of o's intervals that p's do not cover.
func (p position) lacks(o position) uint64 {
	var n uint64
	for d, g := range o.mariadb {
		if have := p.mariadb[d]; have.seq < g.seq {
			n += g.seq - have.seq
		}
	}
	for k, ivs := range o.mysql {
		for _, iv := range ivs {
			n += iv.hi - iv.lo + 1
			for _, h := range p.mysql[k] {
				if lo, hi := max(h.lo, iv.lo), min(h.hi, iv.hi); lo <= hi {
					n -= hi - lo + 1 // p's intervals are disjoint
				}
			}
		}
	}
	return n
}

// covers reports whether one of the merged intervals ivs holds iv.
func covers(ivs []interval, iv interval) bool {
	for _, h := range ivs {
		if h.lo <= iv.lo && iv.hi <= h.hi {
			return true
		}
	}
	return false
}

// String returns the position in its server's syntax, sorted.
func (p position) String() string {
	var parts []string
	for _, d := range slices.Sorted(maps.Keys(p.mariadb)) {
		g := p.mariadb[d]
		parts = append(parts, fmt.Sprintf("%d-%d-%d", d, g.server, g.seq))
	}
	for _, k := range slices.Sorted(maps.Keys(p.mysql)) {
		var b strings.Builder
		b.WriteString(k)
		for _, iv := range p.mysql[k] {
			if iv.lo == iv.hi {
				fmt.Fprintf(&b, ":%d", iv.lo)
			} else {
				fmt.Fprintf(&b, ":%d-%d", iv.lo, iv.hi)
			}
		}
		parts = append(parts, b.String())
	}
	return strings.Join(parts, ",")
}
