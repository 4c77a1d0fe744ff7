// Package userproxy is a TCP proxy to a MySQL server that can cut the
// connections of one MySQL user while others pass: a one-sided network
// partition between one router and a node, for the fleet's ring tests and
// its demo, where every router must name the nodes alike.
package userproxy

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Proxy relays TCP connections to a MySQL server and blackholes those
// of the users cut: it reads the user name from the client's handshake
// response, then holds every byte of the connection (both ways) while its
// user is cut, as a network partition does. The server's greeting, sent
// before the user is known, always passes.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	healed map[string]chan struct{} // user → closed while not cut
	closed chan struct{}
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// New starts a proxy to target on a free loopback port.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, healed: map[string]chan struct{}{}, closed: make(chan struct{}), conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr returns the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetCut cuts (true) or heals (false) the connections of user: while
// cut, they hang.
func (p *Proxy) SetCut(user string, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, isCut := p.healed[user]
	switch {
	case cut && !isCut:
		p.healed[user] = make(chan struct{})
	case !cut && isCut:
		close(ch)
		delete(p.healed, user)
	}
}

// pass blocks while user is cut; false once the proxy is closed.
func (p *Proxy) pass(user string) bool {
	p.mu.Lock()
	ch := p.healed[user]
	p.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-p.closed:
			return false
		}
	}
	select {
	case <-p.closed:
		return false
	default:
		return true
	}
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		return false
	default:
	}
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c, true) {
			c.Close()
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve relays one connection: the greeting freely, then the handshake
// response (which names the user), then everything subject to the user's
// cut.
func (p *Proxy) serve(client net.Conn) {
	defer func() { p.track(client, false); client.Close() }()
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return // the server is down: the client sees its connection closed
	}
	if !p.track(server, true) {
		server.Close()
		return
	}
	defer func() { p.track(server, false); server.Close() }()
	var userMu sync.Mutex
	user, known := "", make(chan struct{})
	done := make(chan struct{}, 2)
	go func() { // server → client
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				select {
				case <-known:
					userMu.Lock()
					u := user
					userMu.Unlock()
					if !p.pass(u) {
						return
					}
				default:
				}
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // client → server
		defer func() { done <- struct{}{} }()
		var hdr [4]byte
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return
		}
		size := int(binary.LittleEndian.Uint32(append(hdr[:3:3], 0)))
		body := make([]byte, size)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		// HandshakeResponse41: capabilities (4), max packet (4), charset
		// (1), filler (23), then the user name, NUL-terminated.
		u := ""
		if len(body) > 32 {
			u, _, _ = strings.Cut(string(body[32:]), "\x00")
		}
		userMu.Lock()
		user = u
		userMu.Unlock()
		close(known)
		if !p.pass(u) {
			return
		}
		if _, err := server.Write(append(hdr[:], body...)); err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if !p.pass(u) {
					return
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				p.pass(u) // a close is not propagated across a cut either
				return
			}
		}
	}()
	<-done
	client.Close()
	server.Close()
	<-done
}

// Close closes the proxy and every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return
	default:
	}
	close(p.closed)
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
