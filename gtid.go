package dbrouter

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// gtidSet is a replication position: MariaDB's @@gtid_current_pos
// ("0-1-100,2-3-57": per replication domain, the last applied sequence
// number) or MySQL's @@gtid_executed ("uuid:1-100:200,uuid2:1-5:tag:1-3":
// per source and tag, the applied transaction intervals). Only what
// containment needs is kept.
type gtidSet struct {
	raw     string
	mariadb map[uint32]uint64             // domain → highest seq_no
	origin  map[uint32]uint32             // domain → server_id of that GTID
	mysql   map[gtidSource][]gtidInterval // sorted, disjoint, not adjacent
}

// gtidSource is where a MySQL transaction comes from: the uuid of the
// server that ran it (lowercase, with dashes) and its tag (MySQL 8.3+,
// lowercase; "" when untagged). Transactions of one uuid with different
// tags, or tagged and untagged, are different transactions.
type gtidSource struct{ uuid, tag string }

// gtidInterval is the transaction ids lo to hi, both included.
type gtidInterval struct{ lo, hi uint64 }

// parseGTIDSet parses a position of the given flavor.
func parseGTIDSet(s string, mysqlFlavor bool) (gtidSet, error) {
	g := gtidSet{raw: s}
	if mysqlFlavor {
		m, err := parseMySQLGTIDSet(s)
		if err != nil {
			return g, err
		}
		g.mysql = m
		return g, nil
	}
	s = strings.Join(strings.Fields(s), "")
	if s == "" {
		return g, nil
	}
	g.mariadb = make(map[uint32]uint64)
	g.origin = make(map[uint32]uint32)
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(part, "-")
		if len(f) != 3 {
			return g, fmt.Errorf("bad MariaDB GTID %q", part)
		}
		d, err1 := strconv.ParseUint(f[0], 10, 32)
		srv, err3 := strconv.ParseUint(f[1], 10, 32)
		seq, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return g, fmt.Errorf("bad MariaDB GTID %q", part)
		}
		if _, seen := g.origin[uint32(d)]; !seen || seq > g.mariadb[uint32(d)] {
			g.mariadb[uint32(d)] = seq
			g.origin[uint32(d)] = uint32(srv)
		}
	}
	return g, nil
}

// parseMySQLGTIDSet parses MySQL's GTID set syntax:
//
//	gtid_set: uuid_set [, uuid_set]... | ""
//	uuid_set: uuid:element[:element]...
//	element:  interval | tag
//	interval: n[-m]                   (1 ≤ n ≤ m ≤ 2^63-1)
//	tag:      [a-z_][a-z0-9_]{0,31}   (MySQL 8.3+, case-insensitive)
//
// A tag applies to the intervals that follow it, up to the next tag, and
// must be followed by at least one; the intervals before the first tag are
// untagged. Whitespace may surround every separator (MySQL prints long
// sets one uuid_set per line), and a uuid may appear in several uuid_sets.
func parseMySQLGTIDSet(s string) (map[gtidSource][]gtidInterval, error) {
	if trimSpace(s) == "" {
		return nil, nil
	}
	m := make(map[gtidSource][]gtidInterval)
	for _, us := range strings.Split(s, ",") {
		us = trimSpace(us)
		if us == "" {
			return nil, errors.New("bad MySQL GTID set: empty uuid set (stray comma)")
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("bad MySQL GTID set: in %q: "+format, append([]any{us}, args...)...)
		}
		elems := strings.Split(us, ":")
		uuid, ok := parseUUID(trimSpace(elems[0]))
		if !ok {
			return nil, bad("bad uuid %q", trimSpace(elems[0]))
		}
		src := gtidSource{uuid: uuid}
		intervals := 0 // since the last tag, or the uuid
		for _, e := range elems[1:] {
			e = trimSpace(e)
			switch {
			case e == "":
				return nil, bad("empty element")
			case e[0] >= '0' && e[0] <= '9' || e[0] == '-' || e[0] == '+':
				iv, err := parseGTIDInterval(e)
				if err != nil {
					return nil, bad("%w", err)
				}
				m[src] = append(m[src], iv)
				intervals++
			default:
				tag, ok := parseGTIDTag(e)
				if !ok {
					return nil, bad("bad tag %q: want an ASCII letter or _, then up to 31 letters, digits or _", e)
				}
				if intervals == 0 && src.tag != "" {
					return nil, bad("no transactions for tag %q", src.tag)
				}
				src.tag, intervals = tag, 0
			}
		}
		if intervals == 0 {
			if src.tag != "" {
				return nil, bad("no transactions for tag %q", src.tag)
			}
			return nil, bad("no transactions for uuid %s", uuid)
		}
	}
	for src, ivs := range m {
		m[src] = mergeIntervals(ivs)
	}
	return m, nil
}

// parseGTIDInterval parses "n" or "n-m", whitespace allowed around "-".
func parseGTIDInterval(e string) (gtidInterval, error) {
	lo, hi, isRange := strings.Cut(e, "-")
	a, err := parseGTIDNumber(trimSpace(lo))
	if err != nil {
		return gtidInterval{}, fmt.Errorf("bad interval %q: %w", e, err)
	}
	b := a
	if isRange {
		if b, err = parseGTIDNumber(trimSpace(hi)); err != nil {
			return gtidInterval{}, fmt.Errorf("bad interval %q: %w", e, err)
		}
	}
	if b < a {
		return gtidInterval{}, fmt.Errorf("interval %q ends before it starts", e)
	}
	return gtidInterval{a, b}, nil
}

// parseGTIDNumber parses a MySQL transaction id: decimal digits, 1 to
// 2^63-1.
func parseGTIDNumber(s string) (uint64, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a transaction id", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("transaction id %s out of range", s)
	}
	if n == 0 {
		return 0, errors.New("transaction ids start at 1")
	}
	return n, nil
}

// parseUUID checks that s is a uuid as MySQL prints it (8-4-4-4-12 hex
// digits, either case) and returns it in lowercase.
func parseUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return "", false
			}
		}
	}
	return strings.ToLower(s), true
}

// parseGTIDTag checks that s is a GTID tag, [a-z_][a-z0-9_]{0,31} in either
// case, and returns it in lowercase.
func parseGTIDTag(s string) (string, bool) {
	if len(s) < 1 || len(s) > 32 || '0' <= s[0] && s[0] <= '9' {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// trimSpace removes the whitespace MySQL allows between elements.
func trimSpace(s string) string { return strings.Trim(s, " \t\n\v\f\r") }

// mergeIntervals sorts ivs and joins those that overlap or touch.
func mergeIntervals(ivs []gtidInterval) []gtidInterval {
	slices.SortFunc(ivs, func(a, b gtidInterval) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		if iv.lo <= last.hi+1 { // ids are below 2^63: no overflow
			last.hi = max(last.hi, iv.hi)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// String returns the position as the server reported it.
func (g gtidSet) String() string { return g.raw }

// contains reports whether g has applied every transaction in o, in every
// domain (MariaDB) or from every source uuid and tag (MySQL).
func (g gtidSet) contains(o gtidSet) bool {
	for d, seq := range o.mariadb {
		if g.mariadb[d] < seq {
			return false
		}
	}
	for src, ivs := range o.mysql {
		have := g.mysql[src]
		for _, iv := range ivs {
			if !covered(have, iv) {
				return false
			}
		}
	}
	return true
}

// covered reports whether iv lies within ivs, which are sorted, disjoint
// and not adjacent: within one of them.
func covered(ivs []gtidInterval, iv gtidInterval) bool {
	i, _ := slices.BinarySearchFunc(ivs, iv.lo, func(c gtidInterval, lo uint64) int {
		if c.hi < lo {
			return -1
		}
		return 1
	})
	return i < len(ivs) && ivs[i].lo <= iv.lo && iv.hi <= ivs[i].hi
}

// lacksForeign reports whether g is missing a transaction of o that did not
// originate at the server whose identity is self (@@server_id for MariaDB,
// @@server_uuid for MySQL; "" when unknown). A server never lacks its own
// transactions, only an older snapshot of its position does; a transaction
// from elsewhere that g lacks says g is behind o for real: the server was
// away while another one took writes.
func (g gtidSet) lacksForeign(o gtidSet, self string) bool {
	for d, seq := range o.mariadb {
		if g.mariadb[d] < seq && strconv.FormatUint(uint64(o.origin[d]), 10) != self {
			return true
		}
	}
	for src, ivs := range o.mysql {
		if src.uuid == strings.ToLower(self) {
			continue
		}
		have := g.mysql[src]
		for _, iv := range ivs {
			if !covered(have, iv) {
				return true
			}
		}
	}
	return false
}
