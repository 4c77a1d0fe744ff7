package dbrouter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// A probe connection that go-sql-driver opened and authenticated is, when
// nothing but TCP carries it (no TLS, no compression), taken over by the
// router: the driver lets go of it (its goodbye and its close go nowhere,
// see probeSocketConn) and the probe speaks the MySQL text protocol on the
// socket itself (rawSession). Every driver connection has a goroutine of
// the driver's (its context watcher) for as long as it is open; a router
// with 3,000 nodes in use would have 3,000 of them for its probe
// connections alone. Authentication, TLS and every connection option stay
// the driver's: only the probe's two fixed one-row queries are the
// router's. A node whose probe connection the router cannot take over
// keeps the driver's connection (probeConn.conn).

// probeSocketConn is the socket of a probe connection as go-sql-driver
// sees it. Once detached, what the driver writes and its Close go nowhere:
// the driver's Close (COM_QUIT, then closing the socket) only ends its own
// watcher goroutine, and the socket and the session on it stay open for
// the router (rawSession).
type probeSocketConn struct {
	*trackedConn
	detached atomic.Bool
}

func (c *probeSocketConn) Write(b []byte) (int, error) {
	if c.detached.Load() {
		return len(b), nil
	}
	return c.trackedConn.Write(b)
}

func (c *probeSocketConn) Close() error {
	if c.detached.Load() {
		return nil
	}
	return c.trackedConn.Close()
}

// rawProbeable reports whether the router may take over the probe
// connections go-sql-driver makes with cfg: plain TCP, no TLS (which the
// driver would hold), no compression (which changes the packets).
func rawProbeable(cfg *mysql.Config) bool {
	if cfg.Net != "" && cfg.Net != "tcp" && cfg.Net != "tcp4" && cfg.Net != "tcp6" {
		return false
	}
	if cfg.TLS != nil || cfg.TLSConfig != "" && cfg.TLSConfig != "false" {
		return false
	}
	for _, p := range []string{"compress=true", "compress=1", "compress=TRUE", "compress=True"} {
		if containsParam(cfg.FormatDSN(), p) {
			return false
		}
	}
	return true
}

func containsParam(dsn, p string) bool {
	for i := 0; i+len(p) <= len(dsn); i++ {
		if dsn[i:i+len(p)] == p && (i == 0 || dsn[i-1] == '?' || dsn[i-1] == '&') &&
			(i+len(p) == len(dsn) || dsn[i+len(p)] == '&') {
			return true
		}
	}
	return false
}

// rawSession is a probe connection the router took over from the driver:
// an authenticated session on a socket of its own, on which it sends
// COM_QUERY and reads a text result set.
type rawSession struct {
	sock       net.Conn // the trackedConn: closed with the node's connections
	buf        []byte   // bytes read, buf[start:end] not consumed yet
	start, end int
	out        []byte
}

// errRawProtocol marks a reply the probe could not read: the connection is
// dropped and the next probe connects again.
var errRawProtocol = errors.New("dbrouter: probe: malformed reply")

// query sends q and returns the first row of its result set as text (NULL
// as ""). An I/O failure wraps mysql.ErrInvalidConn, as the driver's
// would; a server error is a *mysql.MySQLError.
func (r *rawSession) query(q string) ([]string, error) {
	if r.start != r.end {
		return nil, fmt.Errorf("%w: %d bytes left over from the last reply", errRawProtocol, r.end-r.start)
	}
	r.start, r.end = 0, 0
	n := len(q) + 1
	if n >= 1<<24-1 {
		return nil, fmt.Errorf("dbrouter: probe: query too long")
	}
	out := append(r.out[:0], byte(n), byte(n>>8), byte(n>>16), 0, 0x03) // COM_QUERY, sequence 0
	out = append(out, q...)
	r.out = out
	if _, err := r.sock.Write(out); err != nil {
		return nil, fmt.Errorf("%w: %w", mysql.ErrInvalidConn, err)
	}
	p, err := r.packet()
	if err != nil {
		return nil, err
	}
	switch p[0] {
	case 0xff:
		return nil, r.serverError(p)
	case 0x00:
		return nil, fmt.Errorf("dbrouter: probe %q returned no result set", q)
	case 0xfb:
		return nil, fmt.Errorf("%w: LOCAL INFILE request", errRawProtocol)
	}
	cols, k, ok := lenencInt(p)
	if !ok || cols == 0 || cols > 64 {
		return nil, fmt.Errorf("%w: column count", errRawProtocol)
	}
	// MariaDB's metadata cache (MARIADB_CLIENT_CACHE_METADATA) adds a
	// byte: 0 when the column definitions are not sent again.
	metadata := k >= len(p) || p[k] != 0
	if metadata {
		for range cols {
			if p, err = r.packet(); err != nil {
				return nil, err
			}
			if p[0] == 0xff {
				return nil, r.serverError(p)
			}
		}
	}
	var row []string
	for first := true; ; first = false {
		if p, err = r.packet(); err != nil {
			return nil, err
		}
		switch {
		case p[0] == 0xff:
			return nil, r.serverError(p)
		case p[0] == 0xfe && len(p) <= 5 && first && metadata:
			// The EOF after the column definitions (no
			// CLIENT_DEPRECATE_EOF): rows follow.
			continue
		case p[0] == 0xfe && len(p) < 1<<24-1:
			// The end of the rows (EOF, or OK with CLIENT_DEPRECATE_EOF).
			if row == nil {
				return nil, fmt.Errorf("probe %q returned no row", q)
			}
			if len(p) == 5 {
				// An EOF packet: 0xfe, warnings, status flags.
				if binary.LittleEndian.Uint16(p[3:5])&serverMoreResultsExists != 0 {
					return nil, fmt.Errorf("%w: more results", errRawProtocol)
				}
			}
			return row, nil
		}
		if row != nil {
			continue // a further row: read to the end, keep the first
		}
		row = make([]string, 0, cols)
		rest := p
		for range cols {
			s, null, n, ok := lenencString(rest)
			if !ok {
				return nil, fmt.Errorf("%w: row", errRawProtocol)
			}
			if null {
				row = append(row, "")
			} else {
				row = append(row, string(s))
			}
			rest = rest[n:]
		}
	}
}

// serverMoreResultsExists is SERVER_MORE_RESULTS_EXISTS of a status word.
const serverMoreResultsExists = 0x0008

// serverError reads an ERR packet.
func (r *rawSession) serverError(p []byte) error {
	if len(p) < 3 {
		return fmt.Errorf("%w: error packet", errRawProtocol)
	}
	e := &mysql.MySQLError{Number: binary.LittleEndian.Uint16(p[1:3])}
	msg := p[3:]
	if len(msg) >= 6 && msg[0] == '#' {
		copy(e.SQLState[:], msg[1:6])
		msg = msg[6:]
	}
	e.Message = string(msg)
	return e
}

// maxRawPacket bounds a packet of a probe's reply: the probe's rows are a
// few dozen bytes (a GTID position of many domains a few KiB).
const maxRawPacket = 1 << 20

// packet reads one packet and returns its payload, valid until the next
// read. An empty payload or one over maxRawPacket is a protocol error.
func (r *rawSession) packet() ([]byte, error) {
	if err := r.fill(4); err != nil {
		return nil, err
	}
	h := r.buf[r.start:]
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	if n == 0 || n > maxRawPacket {
		return nil, fmt.Errorf("%w: packet of %d bytes", errRawProtocol, n)
	}
	if err := r.fill(4 + n); err != nil {
		return nil, err
	}
	p := r.buf[r.start+4 : r.start+4+n]
	r.start += 4 + n
	return p, nil
}

// fill reads until at least need bytes are buffered.
func (r *rawSession) fill(need int) error {
	if r.end-r.start >= need {
		return nil
	}
	if r.start+need > len(r.buf) {
		// Move what is left to the front, and grow if that is not room
		// enough.
		size := max(len(r.buf), 4096)
		for size < need {
			size *= 2
		}
		b := r.buf
		if size > len(b) {
			b = make([]byte, size)
		}
		copy(b, r.buf[r.start:r.end])
		r.end -= r.start
		r.start = 0
		r.buf = b
	}
	for r.end-r.start < need {
		m, err := r.sock.Read(r.buf[r.end:])
		r.end += m
		if err != nil && r.end-r.start < need {
			return fmt.Errorf("%w: %w", mysql.ErrInvalidConn, err)
		}
	}
	return nil
}

// quit says goodbye (COM_QUIT) without waiting, so that the server does
// not log an aborted connection, and closes the socket.
func (r *rawSession) quit() {
	r.sock.SetDeadline(time.Now().Add(10 * time.Millisecond))
	r.sock.Write([]byte{1, 0, 0, 0, 0x01})
	r.sock.Close()
}

// lenencInt reads a length-encoded integer: its value and its size.
func lenencInt(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xfc:
		if len(b) < 3 {
			return 0, 0, false
		}
		return uint64(binary.LittleEndian.Uint16(b[1:3])), 3, true
	case 0xfd:
		if len(b) < 4 {
			return 0, 0, false
		}
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, true
	case 0xfe:
		if len(b) < 9 {
			return 0, 0, false
		}
		return binary.LittleEndian.Uint64(b[1:9]), 9, true
	case 0xfb, 0xff:
		return 0, 0, false
	}
	return uint64(b[0]), 1, true
}

// lenencString reads a length-encoded string (0xfb: NULL): its bytes,
// whether it is NULL, and its size in b.
func lenencString(b []byte) (s []byte, null bool, n int, ok bool) {
	if len(b) > 0 && b[0] == 0xfb {
		return nil, true, 1, true
	}
	l, k, ok := lenencInt(b)
	if !ok || uint64(len(b)-k) < l {
		return nil, false, 0, false
	}
	return b[k : k+int(l)], false, k + int(l), true
}
