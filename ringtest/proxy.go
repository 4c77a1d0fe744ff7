package ringtest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// proxyDialTimeout bounds the proxy's connect to its server.
const proxyDialTimeout = 2 * time.Second

// proxy is an in-process TCP relay between the router and one server. While
// cut, it blackholes the path: it keeps accepting connections (as a host's
// kernel does) but relays nothing in either direction and propagates no
// close, so callers see hangs, never refusals. Heal resumes relaying; bytes
// held during the cut are delivered then, as TCP retransmission would.
// Replication between ring members does not pass through it.
type proxy struct {
	ln     net.Listener
	target func() string // the server's own address, read at each dial

	mu     sync.Mutex
	cut    bool
	healed chan struct{} // closed while not cut; replaced by Cut
	closed chan struct{} // closed by close
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// newProxy listens on a free loopback port and relays to target().
func newProxy(target func() string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ringtest: proxy listen: %w", err)
	}
	p := &proxy{
		ln:     ln,
		target: target,
		healed: make(chan struct{}),
		closed: make(chan struct{}),
		conns:  map[net.Conn]struct{}{},
	}
	close(p.healed)
	p.wg.Go(p.accept)
	return p, nil
}

// addr returns the address callers connect to.
func (p *proxy) addr() string { return p.ln.Addr().String() }

// setCut blackholes (true) or heals (false) the path.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cut == p.cut {
		return
	}
	p.cut = cut
	if cut {
		p.healed = make(chan struct{})
	} else {
		close(p.healed)
	}
}

func (p *proxy) isCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// pass blocks while the path is cut. It returns false once the proxy is
// closed.
func (p *proxy) pass() bool {
	p.mu.Lock()
	healed := p.healed
	p.mu.Unlock()
	select {
	case <-healed:
		select {
		case <-p.closed:
			return false
		default:
			return true
		}
	case <-p.closed:
		return false
	}
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-p.closed:
				return
			case <-time.After(10 * time.Millisecond):
				continue
			}
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve relays one client connection. A connection accepted while cut is
// held without dialling the server until Heal.
func (p *proxy) serve(client net.Conn) {
	defer p.untrack(client)
	if !p.pass() {
		return
	}
	server, err := net.DialTimeout("tcp", p.target(), proxyDialTimeout)
	if err != nil {
		return // the server is down: the client sees its connection closed
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	go func() { p.relay(server, client); done <- struct{}{} }()
	go func() { p.relay(client, server); done <- struct{}{} }()
	<-done
	// One side ended; closing both (by the defers) ends the other relay.
	client.Close()
	server.Close()
	<-done
}

// relay copies src to dst, holding every chunk (and the final close) while
// the path is cut.
func (p *proxy) relay(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			p.pass() // a close is not propagated across a cut either
			return
		}
	}
}

// close stops accepting, drops every connection and waits for the relays.
func (p *proxy) close() {
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
