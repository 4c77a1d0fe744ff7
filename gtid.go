package dbrouter

import (
	"fmt"
	"strconv"
	"strings"
)

// gtidSet is a replication position: MariaDB's @@gtid_current_pos
// ("0-1-100,2-3-57": per replication domain, the last applied sequence
// number) or MySQL's @@gtid_executed ("uuid:1-100:200,uuid2:1-5": per
// source, the applied transaction intervals). Only what containment needs
// is kept.
type gtidSet struct {
	raw     string
	mariadb map[uint32]uint64      // domain → highest seq_no
	mysql   map[string][][2]uint64 // source uuid → intervals
}

// parseGTIDSet parses a position of the given flavor.
func parseGTIDSet(s string, mysqlFlavor bool) (gtidSet, error) {
	g := gtidSet{raw: s}
	s = strings.Join(strings.Fields(s), "") // MySQL wraps long sets over lines
	if s == "" {
		return g, nil
	}
	if !mysqlFlavor {
		g.mariadb = make(map[uint32]uint64)
		for _, part := range strings.Split(s, ",") {
			f := strings.Split(part, "-")
			if len(f) != 3 {
				return g, fmt.Errorf("bad MariaDB GTID %q", part)
			}
			d, err1 := strconv.ParseUint(f[0], 10, 32)
			seq, err2 := strconv.ParseUint(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				return g, fmt.Errorf("bad MariaDB GTID %q", part)
			}
			if seq > g.mariadb[uint32(d)] {
				g.mariadb[uint32(d)] = seq
			}
		}
		return g, nil
	}
	g.mysql = make(map[string][][2]uint64)
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(part, ":")
		if len(f) < 2 {
			return g, fmt.Errorf("bad MySQL GTID set %q", part)
		}
		src := strings.ToLower(f[0])
		for _, iv := range f[1:] {
			lo, hi, found := strings.Cut(iv, "-")
			a, err1 := strconv.ParseUint(lo, 10, 64)
			b := a
			var err2 error
			if found {
				b, err2 = strconv.ParseUint(hi, 10, 64)
			}
			if err1 != nil || err2 != nil || b < a {
				return g, fmt.Errorf("bad MySQL GTID interval %q", iv)
			}
			g.mysql[src] = append(g.mysql[src], [2]uint64{a, b})
		}
	}
	return g, nil
}

// String returns the position as the server reported it.
func (g gtidSet) String() string { return g.raw }

// contains reports whether g has applied every transaction in o, in every
// domain (MariaDB) or from every source (MySQL).
func (g gtidSet) contains(o gtidSet) bool {
	for d, seq := range o.mariadb {
		if g.mariadb[d] < seq {
			return false
		}
	}
	for src, ivs := range o.mysql {
		for _, iv := range ivs {
			if !covered(g.mysql[src], iv) {
				return false
			}
		}
	}
	return true
}

// covered reports whether the interval iv lies within the union of ivs.
func covered(ivs [][2]uint64, iv [2]uint64) bool {
	next := iv[0]
	for progress := true; progress && next <= iv[1]; {
		progress = false
		for _, c := range ivs {
			if c[0] <= next && next <= c[1] {
				if c[1] == ^uint64(0) {
					return true
				}
				next = c[1] + 1
				progress = true
			}
		}
	}
	return next > iv[1]
}
