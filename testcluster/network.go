package testcluster

import (
	"errors"
	"maps"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/sluicerl/sluice/gossip"
)

// Network is an in-memory network of hosts, each an "ip:port" address that
// carries datagrams and streams. It never blocks a sender: a datagram that
// cannot be delivered (host down, partitioned away, queue full, randomly
// dropped) is lost, as UDP would lose it. It is safe for concurrent use.
//
// Faults: Partition splits hosts into groups that cannot reach each other
// (a black hole: dials time out, open streams are cut); Heal joins them
// again; Kill takes a host down (dials are refused, streams cut); SetDrop
// loses a fraction of datagrams; SetDelay delays every datagram; SetSlow
// delays those one host sends.
type Network struct {
	mu    sync.Mutex // guards every field below
	hosts map[string]*Host
	group map[string]int // partition group by address; absent = 0
	drop  float64
	delay time.Duration
	slow  map[string]time.Duration // extra delay of datagrams from a host
	rng   *rand.Rand
	conns map[*conn]struct{}

	traffic Traffic
}

// Traffic is what a Network has carried.
type Traffic struct {
	// Packets and PacketBytes are the datagrams delivered: memberlist's
	// probes and gossip, and sluice's counter packets.
	Packets, PacketBytes uint64
	// StreamBytes are the bytes written on streams, by the port they were
	// opened to: the gossip port's are memberlist's full state exchanges
	// (and joins), the peer port's are forwarded checks and handoffs.
	StreamBytes map[int]uint64
}

// NewNetwork returns an empty network whose random drops are drawn from
// seed.
func NewNetwork(seed uint64) *Network {
	return &Network{
		hosts: make(map[string]*Host),
		group: make(map[string]int),
		slow:  make(map[string]time.Duration),
		rng:   rand.New(rand.NewPCG(seed, seed)),
		conns: make(map[*conn]struct{}),
	}
}

// queueDepth is how many datagrams or streams wait for a host before more
// are dropped.
const queueDepth = 1024

// Host returns the host at addr, bringing it up with empty queues. A host
// brought up again after Kill is a new one: nothing from its past life is
// delivered to it.
func (n *Network) Host(addr string) *Host {
	ip, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		panic("testcluster: bad address " + addr)
	}
	port, _ := strconv.Atoi(portStr)
	h := &Host{
		net:     n,
		addr:    addr,
		ip:      net.ParseIP(ip),
		port:    port,
		packets: make(chan *gossip.Packet, queueDepth),
		streams: make(chan net.Conn, queueDepth),
	}
	n.mu.Lock()
	if old := n.hosts[addr]; old != nil {
		old.down = true
	}
	n.hosts[addr] = h
	n.mu.Unlock()
	return h
}

// Kill takes the host at addr down: everything sent to it is lost, dials are
// refused and its open streams are cut.
func (n *Network) Kill(addr string) {
	n.mu.Lock()
	if h := n.hosts[addr]; h != nil {
		h.down = true
	}
	n.cutLocked(func(c *conn) bool { return c.local == addr || c.remote == addr })
	n.mu.Unlock()
}

// Partition splits the hosts into groups that cannot reach each other. Hosts
// named in no group form one more group together.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = make(map[string]int)
	for i, g := range groups {
		for _, addr := range g {
			n.group[addr] = i + 1
		}
	}
	n.cutLocked(func(c *conn) bool { return !n.reachableLocked(c.local, c.remote) })
}

// Heal removes every partition.
func (n *Network) Heal() {
	n.mu.Lock()
	n.group = make(map[string]int)
	n.mu.Unlock()
}

// SetDrop makes the network lose each datagram with probability p.
func (n *Network) SetDrop(p float64) {
	n.mu.Lock()
	n.drop = p
	n.mu.Unlock()
}

// SetDelay delays every datagram by d.
func (n *Network) SetDelay(d time.Duration) {
	n.mu.Lock()
	n.delay = d
	n.mu.Unlock()
}

// SetSlow delays every datagram the host at addr sends by d more than
// the others: a sender whose packets leave late, as a process starved of
// CPU sends them (0 ends it).
func (n *Network) SetSlow(addr string, d time.Duration) {
	n.mu.Lock()
	n.slow[addr] = d
	n.mu.Unlock()
}

// Traffic returns what the network has carried so far.
func (n *Network) Traffic() Traffic {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.traffic
	t.StreamBytes = maps.Clone(t.StreamBytes)
	return t
}

// OpenStreams returns the streams open to port, by host address: those
// the host dialled, and those it accepted. An end is open until its side
// closes it, so a stream the other side has closed counts until this one
// notices.
func (n *Network) OpenStreams(port int) (dialed, accepted map[string]int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	dialed, accepted = make(map[string]int), make(map[string]int)
	for c := range n.conns {
		switch {
		case c.port != port:
		case c.dialed:
			dialed[c.local]++
		default:
			accepted[c.local]++
		}
	}
	return dialed, accepted
}

func (n *Network) reachableLocked(from, to string) bool {
	return n.group[from] == n.group[to]
}

func (n *Network) cutLocked(match func(*conn) bool) {
	for c := range n.conns {
		if match(c) {
			c.Conn.Close()
			delete(n.conns, c)
		}
	}
}

// Host is one address on a Network. It implements gossip.Transport.
type Host struct {
	net     *Network
	addr    string
	ip      net.IP
	port    int
	packets chan *gossip.Packet
	streams chan net.Conn
	down    bool // guarded by net.mu
}

var _ gossip.Transport = (*Host)(nil)

// Addr returns the host's address.
func (h *Host) Addr() string { return h.addr }

// LocalAddr implements gossip.Transport.
func (h *Host) LocalAddr() (net.IP, int) { return h.ip, h.port }

// WriteTo implements gossip.Transport: the datagram is delivered, after the
// network's delay, unless it is lost.
func (h *Host) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	n := h.net
	n.mu.Lock()
	dst := n.hosts[addr]
	lost := h.down || dst == nil || dst.down || !n.reachableLocked(h.addr, addr) ||
		(n.drop > 0 && n.rng.Float64() < n.drop)
	delay := n.delay + n.slow[h.addr]
	n.mu.Unlock()
	if lost {
		return now, nil
	}
	p := &gossip.Packet{Buf: append([]byte(nil), b...), From: &net.UDPAddr{IP: h.ip, Port: h.port}, Timestamp: now}
	if delay > 0 {
		time.AfterFunc(delay, func() { dst.deliver(p) })
	} else {
		dst.deliver(p)
	}
	return now, nil
}

func (h *Host) deliver(p *gossip.Packet) {
	h.net.mu.Lock()
	defer h.net.mu.Unlock()
	if h.down {
		return
	}
	select {
	case h.packets <- p:
		h.net.traffic.Packets++
		h.net.traffic.PacketBytes += uint64(len(p.Buf))
	default: // queue full: lost
	}
}

// PacketCh implements gossip.Transport.
func (h *Host) PacketCh() <-chan *gossip.Packet { return h.packets }

// errRefused is a dial to a host that is down.
var errRefused = errors.New("testcluster: connection refused")

// errTimeout is a dial into a partition.
var errTimeout = errors.New("testcluster: dial timed out")

// DialTimeout implements gossip.Transport. A dial to a host that is down is
// refused at once; a dial across a partition times out.
func (h *Host) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	n := h.net
	n.mu.Lock()
	dst := n.hosts[addr]
	switch {
	case h.down || dst == nil || dst.down:
		n.mu.Unlock()
		return nil, errRefused
	case !n.reachableLocked(h.addr, addr):
		n.mu.Unlock()
		time.Sleep(timeout)
		return nil, errTimeout
	}
	client, server := net.Pipe()
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	cc := &conn{Conn: client, net: n, local: h.addr, remote: addr, port: port, dialed: true}
	sc := &conn{Conn: server, net: n, local: addr, remote: h.addr, port: port}
	select {
	case dst.streams <- sc:
		n.conns[cc] = struct{}{}
		n.conns[sc] = struct{}{}
		n.mu.Unlock()
		return cc, nil
	default:
		n.mu.Unlock()
		client.Close()
		server.Close()
		return nil, errRefused
	}
}

// StreamCh implements gossip.Transport.
func (h *Host) StreamCh() <-chan net.Conn { return h.streams }

// Shutdown implements gossip.Transport: the host goes down. A host already
// replaced by a new life at its address leaves the new one alone.
func (h *Host) Shutdown() error {
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	h.down = true
	if n.hosts[h.addr] == h {
		n.cutLocked(func(c *conn) bool { return c.local == h.addr || c.remote == h.addr })
	}
	return nil
}

// Listener returns a net.Listener that accepts the streams dialled to the
// host. Closing it takes the host down.
func (h *Host) Listener() net.Listener {
	return &listener{h: h, closed: make(chan struct{})}
}

type listener struct {
	h      *Host
	closed chan struct{}
	once   sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.h.streams:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.h.Shutdown()
}

func (l *listener) Addr() net.Addr { return tcpAddr(l.h.addr) }

// conn is one end of a stream, with the addresses the network uses to cut
// it.
type conn struct {
	net.Conn
	net           *Network
	local, remote string
	port          int  // the port the stream was opened to
	dialed        bool // the dialling end
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.net.mu.Lock()
	if c.net.traffic.StreamBytes == nil {
		c.net.traffic.StreamBytes = make(map[int]uint64)
	}
	c.net.traffic.StreamBytes[c.port] += uint64(n)
	c.net.mu.Unlock()
	return n, err
}

func (c *conn) LocalAddr() net.Addr  { return tcpAddr(c.local) }
func (c *conn) RemoteAddr() net.Addr { return tcpAddr(c.remote) }

func tcpAddr(hp string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", hp)
	if err != nil {
		return &net.TCPAddr{}
	}
	return a
}

func (c *conn) Close() error {
	c.net.mu.Lock()
	delete(c.net.conns, c)
	c.net.mu.Unlock()
	return c.Conn.Close()
}
