package dbrouter

import (
	"strings"
	"testing"
)

// Source uuids for the MySQL GTID tests. The first three are the ones MySQL's
// reference manual uses in "GTID Format and Storage" and "GTID Sets".
const (
	uuidA = "3E11FA47-71CA-11E1-9E33-C80AA9429562"
	uuidB = "2174B383-5441-11E8-B90A-C80AA9429562"
	uuidC = "ad52a8f4-a8a5-11ee-9fe2-b445067d2b80"
	uuidD = "24da1670-0c0c-11e8-8442-00059a3c7b00"
)

// sameGTIDSet reports whether a and b hold the same transactions.
func sameGTIDSet(a, b gtidSet) bool { return a.contains(b) && b.contains(a) }

// TestParseGTIDSetMySQLTagged checks that every form of MySQL's GTID set
// syntax parses, tagged GTIDs (MySQL 8.3+, "uuid:1-5:tag:1-3") included, to
// the transactions it names: same is an equivalent spelling, in lists
// single GTIDs that must be in the set, out single GTIDs that must not.
func TestParseGTIDSetMySQLTagged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		set     string
		same    string
		in, out []string
	}{
		{name: "empty", set: "", out: []string{uuidA + ":1"}},
		{name: "only whitespace", set: " \n\t", out: []string{uuidA + ":1"}},
		{name: "single transaction", set: uuidA + ":23",
			in: []string{uuidA + ":23"}, out: []string{uuidA + ":22", uuidA + ":24"}},
		{name: "interval", set: uuidA + ":1-5", same: uuidA + ":1:2:3:4:5",
			in: []string{uuidA + ":1", uuidA + ":5"}, out: []string{uuidA + ":6"}},
		{name: "intervals with gaps", set: uuidA + ":1-3:11:47-49",
			in:  []string{uuidA + ":3", uuidA + ":11", uuidA + ":47", uuidA + ":49"},
			out: []string{uuidA + ":4", uuidA + ":10", uuidA + ":12", uuidA + ":46", uuidA + ":50"}},
		{name: "one-element interval", set: uuidA + ":7-7", same: uuidA + ":7"},
		{name: "uuid is case-insensitive", set: strings.ToLower(uuidA) + ":1-5", same: uuidA + ":1-5"},
		{name: "several uuids, wrapped as MySQL prints them",
			set:  uuidB + ":1-3,\n" + uuidD + ":1-19",
			same: uuidD + ":1-19," + uuidB + ":1-3",
			in:   []string{uuidB + ":3", uuidD + ":19"}, out: []string{uuidB + ":4", uuidD + ":20"}},
		{name: "whitespace between every element", set: " " + uuidA + " : 1 - 3 :\n11 ,\r\n\t" + uuidB + " :\ttag : 2 ",
			same: uuidA + ":1-3:11," + uuidB + ":tag:2"},
		{name: "same uuid in several uuid sets", set: uuidA + ":1-3," + uuidB + ":1," + uuidA + ":4-6:9",
			same: uuidB + ":1," + uuidA + ":1-6:9",
			in:   []string{uuidA + ":6", uuidA + ":9"}, out: []string{uuidA + ":7"}},
		{name: "overlapping intervals", set: uuidA + ":5-10:1-6:8", same: uuidA + ":1-10"},
		{name: "tagged only", set: uuidC + ":tag_1:1-3",
			in:  []string{uuidC + ":tag_1:1", uuidC + ":tag_1:3"},
			out: []string{uuidC + ":1", uuidC + ":tag_1:4", uuidC + ":tag_2:1"}},
		{name: "untagged then tagged", set: uuidC + ":1-5:tag:1-3",
			same: uuidC + ":tag:1-3," + uuidC + ":1-5",
			in:   []string{uuidC + ":5", uuidC + ":tag:3"},
			out:  []string{uuidC + ":6", uuidC + ":tag:4", uuidC + ":tag:5"}},
		{name: "tag applies until the next tag", set: uuidC + ":1:aa:1-2:5:bb:3",
			same: uuidC + ":1," + uuidC + ":aa:1-2:5," + uuidC + ":bb:3",
			in:   []string{uuidC + ":aa:5", uuidC + ":bb:3"},
			out:  []string{uuidC + ":5", uuidC + ":bb:5", uuidC + ":aa:3"}},
		{name: "tag is case-insensitive", set: uuidC + ":Tag_X:1-3", same: strings.ToUpper(uuidC) + ":tag_x:1-3"},
		{name: "tag of one character", set: uuidC + ":_:1", in: []string{uuidC + ":_:1"}, out: []string{uuidC + ":1"}},
		{name: "tag of 32 characters", set: uuidC + ":" + strings.Repeat("z9", 16) + ":1"},
		{name: "same tag in several uuid sets", set: uuidC + ":t:1-2," + uuidC + ":t:3:1-4," + uuidC + ":t:6",
			same: uuidC + ":t:1-4:6",
			out:  []string{uuidC + ":t:5", uuidC + ":1"}},
		{name: "largest transaction id", set: uuidA + ":1-9223372036854775807",
			in: []string{uuidA + ":9223372036854775807"}},
		{name: "tagged, multiple uuids, wrapped", set: uuidA + ":1-5:tag:1-3,\n" + uuidC + ":tag_1:1-3:tag_2:1,\n" + uuidB + ":1-10",
			in:  []string{uuidA + ":tag:3", uuidC + ":tag_1:3", uuidC + ":tag_2:1", uuidB + ":10"},
			out: []string{uuidA + ":tag:4", uuidC + ":tag_2:2", uuidC + ":1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parse := func(s string) gtidSet {
				t.Helper()
				g, err := parseGTIDSet(s, true)
				if err != nil {
					t.Fatalf("parseGTIDSet(%q): %v", s, err)
				}
				return g
			}
			g := parse(tc.set)
			if g.String() != tc.set {
				t.Errorf("String() = %q, want the input %q", g.String(), tc.set)
			}
			if !g.contains(g) {
				t.Errorf("%q does not contain itself", tc.set)
			}
			if tc.same != "" {
				if !sameGTIDSet(g, parse(tc.same)) {
					t.Errorf("%q and %q differ", tc.set, tc.same)
				}
			}
			for _, s := range tc.in {
				if !g.contains(parse(s)) {
					t.Errorf("%q does not contain %q", tc.set, s)
				}
			}
			for _, s := range tc.out {
				if g.contains(parse(s)) {
					t.Errorf("%q contains %q", tc.set, s)
				}
			}
		})
	}
}

// TestParseGTIDSetMySQLRejects checks that malformed MySQL GTID sets are
// rejected with an error that says what is wrong.
func TestParseGTIDSetMySQLRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, set, wantErr string }{
		{"uuid only", uuidA, "no transactions"},
		{"uuid too short", uuidA[:35] + ":1", "bad uuid"},
		{"uuid not hex", uuidA[:35] + "g:1", "bad uuid"},
		{"uuid dashes misplaced", "3E11FA4-771CA-11E1-9E33-C80AA9429562:1", "bad uuid"},
		{"uuid with space inside", "3E11FA47 -71CA-11E1-9E33-C80AA9429562:1", "bad uuid"},
		{"not a uuid", "uuid1:1-10", "bad uuid"},
		{"empty element", uuidA + "::1", "empty element"},
		{"trailing colon", uuidA + ":1:", "empty element"},
		{"colon only", uuidA + ":", "empty element"},
		{"empty uuid set at the end", uuidA + ":1,", "empty uuid set"},
		{"empty uuid set in the middle", uuidA + ":1,," + uuidB + ":1", "empty uuid set"},
		{"empty uuid set at the start", "," + uuidA + ":1", "empty uuid set"},
		{"interval hi < lo", uuidA + ":5-3", "ends before it starts"},
		{"transaction id 0", uuidA + ":0", "transaction ids start at 1"},
		{"interval from 0", uuidA + ":0-3", "transaction ids start at 1"},
		{"transaction id out of range", uuidA + ":9223372036854775808", "out of range"},
		{"interval without end", uuidA + ":1-", "bad interval"},
		{"interval without start", uuidA + ":-1", "bad interval"},
		{"interval of three numbers", uuidA + ":1-2-3", "bad interval"},
		{"sign", uuidA + ":+1", "bad interval"},
		{"space inside a number", uuidA + ":1 0", "bad interval"},
		{"number then letters", uuidA + ":1abc", "bad interval"},
		{"tag without transactions", uuidA + ":tag", "no transactions"},
		{"tag without transactions after intervals", uuidA + ":1-5:tag", "no transactions"},
		{"tag followed by tag", uuidA + ":t1:t2:1", "no transactions"},
		{"tag too long", uuidA + ":" + strings.Repeat("a", 33) + ":1", "bad tag"},
		{"tag with dash", uuidA + ":ta-g:1", "bad tag"},
		{"tag with non-ASCII letter", uuidA + ":t\u00e9:1", "bad tag"},
		{"tag with Kelvin sign", uuidA + ":\u212a:1", "bad tag"},
		{"MariaDB position", "0-1-100", "bad uuid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseGTIDSet(tc.set, true)
			if err == nil {
				t.Fatalf("parseGTIDSet(%q) accepted", tc.set)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseGTIDSet(%q) = %v, want an error saying %q", tc.set, err, tc.wantErr)
			}
		})
	}
}

// TestGTIDSetContainsPerUUIDAndTag checks containment on MySQL sets: a node
// has another's transactions only if it has them for every (uuid, tag)
// pair; untagged and tagged transactions of one uuid are different ones.
func TestGTIDSetContainsPerUUIDAndTag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a, b string
		want bool
	}{
		{"untagged does not hold tagged", uuidC + ":1-5", uuidC + ":tag:1", false},
		{"tagged does not hold untagged", uuidC + ":tag:1-5", uuidC + ":1", false},
		{"other tag", uuidC + ":aa:1-5", uuidC + ":bb:1", false},
		{"same tag, other uuid", uuidA + ":tag:1-5", uuidC + ":tag:1", false},
		{"both", uuidC + ":1-5:tag:1-3", uuidC + ":3:tag:3", true},
		{"tagged beyond", uuidC + ":1-5:tag:1-3", uuidC + ":tag:1-4", false},
		{"gap", uuidA + ":1-3:11:47-49", uuidA + ":4", false},
		{"across a gap", uuidA + ":1-3:11:47-49", uuidA + ":3-11", false},
		{"around the gaps", uuidA + ":1-3:11:47-49", uuidA + ":1-3:47", true},
		{"adjacent intervals join", uuidA + ":1-3:4-6", uuidA + ":2-5", true},
		{"uuid sets of one uuid join", uuidA + ":1-3," + uuidA + ":4-6", uuidA + ":1-6", true},
		{"uuid sets of one uuid, gap", uuidA + ":1-3," + uuidA + ":5-6", uuidA + ":1-6", false},
		{"uuid sets of one uuid, tagged", uuidA + ":1-3," + uuidA + ":t:4-6", uuidA + ":1-6", false},
		{"another uuid is missing", uuidA + ":1-10", uuidA + ":1-10,\n" + uuidB + ":1", false},
		{"everything holds the empty set", uuidA + ":1", "", true},
		{"empty holds nothing", "", uuidA + ":1", false},
		{"empty holds empty", "", "", true},
		{"case differs", strings.ToLower(uuidC) + ":TAG:1-9", strings.ToUpper(uuidC) + ":tag:9", true},
		{"up to the largest id", uuidA + ":5-9223372036854775807", uuidA + ":9223372036854775807", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := parseGTIDSet(tc.a, true)
			if err != nil {
				t.Fatal(err)
			}
			b, err := parseGTIDSet(tc.b, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.contains(b); got != tc.want {
				t.Errorf("%q contains %q = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

// FuzzParseGTIDSet checks that no input makes parseGTIDSet panic, that a set
// it accepts contains itself and the empty set, and that a MySQL set means
// the same with whitespace after its separators.
func FuzzParseGTIDSet(f *testing.F) {
	for _, s := range []string{
		"", "0-1-100", "0-1-100,1-2-5", "0-1", "x-1-2", "0-1-2,",
		uuidA + ":1-5", uuidA + ":1-3:11:47-49", uuidC + ":tag_1:1-3", uuidC + ":1-5:tag:1-3",
		uuidB + ":1-3,\n" + uuidD + ":1-19", uuidA + ":1-3," + uuidA + ":t:4-6:u:1",
		uuidA + "::1", uuidA + ":5-3", uuidA + ":0", uuidA + ":tag", uuidA + ":1-9223372036854775807",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	empty := gtidSet{}
	f.Fuzz(func(t *testing.T, s string, mysql bool) {
		g, err := parseGTIDSet(s, mysql)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if !g.contains(g) {
			t.Fatalf("%q does not contain itself", s)
		}
		if !g.contains(empty) {
			t.Fatalf("%q does not contain the empty set", s)
		}
		if !mysql {
			return
		}
		spaced := strings.NewReplacer(",", " ,\n ", ":", "\t:\r\n").Replace(s)
		h, err := parseGTIDSet(spaced, true)
		if err != nil {
			t.Fatalf("%q parses but %q does not: %v", s, spaced, err)
		}
		if !sameGTIDSet(g, h) {
			t.Fatalf("%q and %q differ", s, spaced)
		}
	})
}
