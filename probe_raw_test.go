package dbrouter

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// rawServer answers one COM_QUERY on the server side of a pipe with the
// given packets (payloads; sequence numbers are filled in).
func rawServer(t *testing.T, packets ...[]byte) *rawSession {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	go func() {
		hdr := make([]byte, 4)
		if _, err := readFull(server, hdr); err != nil {
			return
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		body := make([]byte, n)
		if _, err := readFull(server, body); err != nil || body[0] != 0x03 {
			return
		}
		var out []byte
		for i, p := range packets {
			out = append(out, byte(len(p)), byte(len(p)>>8), byte(len(p)>>16), byte(i+1))
			out = append(out, p...)
		}
		server.Write(out)
	}()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	return &rawSession{sock: client}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func lenenc(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func rowPacket(vals ...string) []byte {
	var p []byte
	for _, v := range vals {
		if v == "\x00NULL" {
			p = append(p, 0xfb)
			continue
		}
		p = append(p, lenenc(v)...)
	}
	return p
}

var (
	colDef   = []byte("\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x01\x00\x00\x00\xfd\x00\x00\x00\x00\x00")
	eofPkt   = []byte{0xfe, 0, 0, 0x02, 0}
	okEndPkt = []byte{0xfe, 0, 0, 0x02, 0, 0, 0}
)

func TestRawSessionQuery(t *testing.T) {
	cases := []struct {
		name    string
		packets [][]byte
		want    []string
		err     string
	}{
		{"eof style", [][]byte{{3}, colDef, colDef, colDef, eofPkt, rowPacket("0", "0-1-5", "1"), eofPkt}, []string{"0", "0-1-5", "1"}, ""},
		{"deprecate eof", [][]byte{{3}, colDef, colDef, colDef, rowPacket("1", "", "2"), okEndPkt}, []string{"1", "", "2"}, ""},
		{"null column", [][]byte{{2}, colDef, colDef, rowPacket("\x00NULL", "x"), okEndPkt}, []string{"", "x"}, ""},
		{"metadata cached", [][]byte{{2, 0}, rowPacket("a", "b"), okEndPkt}, []string{"a", "b"}, ""},
		{"metadata follows flag", [][]byte{{2, 1}, colDef, colDef, rowPacket("a", "b"), okEndPkt}, []string{"a", "b"}, ""},
		{"two rows keep the first", [][]byte{{1}, colDef, rowPacket("first"), rowPacket("second"), okEndPkt}, []string{"first"}, ""},
		{"long value", [][]byte{{1}, colDef, append([]byte{0xfc, 44, 1}, strings.Repeat("g", 300)...), okEndPkt}, []string{strings.Repeat("g", 300)}, ""},
		{"no row", [][]byte{{1}, colDef, okEndPkt}, nil, "returned no row"},
		{"server error", [][]byte{append([]byte{0xff, 0x7a, 0x04, '#', '4', '2', '0', '0', '0'}, "Unknown thing"...)}, nil, "Error 1146 (42000): Unknown thing"},
		{"ok, no result set", [][]byte{{0, 0, 0, 2, 0, 0, 0}}, nil, "no result set"},
		{"truncated row", [][]byte{{2}, colDef, colDef, {5, 'a'}, okEndPkt}, nil, "malformed"},
		{"error mid rows", [][]byte{{1}, colDef, append([]byte{0xff, 0x15, 0x04, '#', 'H', 'Y', '0', '0', '0'}, "killed"...)}, nil, "killed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rawServer(t, tc.packets...)
			row, err := r.query("SELECT 1")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(row, tc.want) {
				t.Errorf("row %q, want %q", row, tc.want)
			}
		})
	}
}

func TestRawSessionServerErrorTyped(t *testing.T) {
	r := rawServer(t, append([]byte{0xff, 0x7a, 0x04, '#', '4', '2', '0', '0', '0'}, "no"...))
	_, err := r.query("SELECT 1")
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1146 || string(me.SQLState[:]) != "42000" {
		t.Errorf("err %#v, want *mysql.MySQLError 1146 42000", err)
	}
}

// A connection the server closed is the driver's ErrInvalidConn, which the
// probe retries once on a new connection.
func TestRawSessionClosedIsInvalidConn(t *testing.T) {
	client, server := net.Pipe()
	server.Close()
	r := &rawSession{sock: client}
	_, err := r.query("SELECT 1")
	if !errors.Is(err, mysql.ErrInvalidConn) {
		t.Errorf("err %v, want mysql.ErrInvalidConn", err)
	}
}

func TestRawProbeable(t *testing.T) {
	base := func() *mysql.Config { c := mysql.NewConfig(); c.Net, c.Addr = "tcp", "h:3306"; return c }
	if !rawProbeable(base()) {
		t.Error("plain TCP: want the router to take over")
	}
	c := base()
	c.TLSConfig = "skip-verify"
	if rawProbeable(c) {
		t.Error("TLS: want the driver's connection")
	}
	c = base()
	c.Apply(mysql.EnableCompression(true))
	if rawProbeable(c) {
		t.Error("compression: want the driver's connection")
	}
	c = base()
	c.Net = "unix"
	if rawProbeable(c) {
		t.Error("unix socket: want the driver's connection")
	}
}

func FuzzRawSessionReply(f *testing.F) {
	f.Add([]byte{1, 0, 0, 1, 1, 2, 0, 0, 2, 1, 'a', 7, 0, 0, 3, 0xfe, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{5, 0, 0, 1, 0xfe, 0, 0, 2, 0})
	f.Fuzz(func(t *testing.T, reply []byte) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			hdr := make([]byte, 4)
			if _, err := readFull(server, hdr); err != nil {
				return
			}
			body := make([]byte, int(hdr[0]))
			readFull(server, body)
			server.Write(reply)
		}()
		client.SetDeadline(time.Now().Add(2 * time.Second))
		r := &rawSession{sock: client}
		r.query("S") // must not panic
	})
}
