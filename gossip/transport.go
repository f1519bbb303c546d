package gossip

import (
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Packet is one datagram received by a Transport.
type Packet struct {
	Buf       []byte
	From      net.Addr
	Timestamp time.Time
}

// Transport carries a node's gossip when it does not use real UDP and TCP
// sockets: testcluster's in-memory network implements it. The semantics are
// those of a datagram socket and a stream listener on one address.
type Transport interface {
	// LocalAddr returns the address the node is reachable at.
	LocalAddr() (ip net.IP, port int)
	// WriteTo sends a datagram to addr ("ip:port"). It must not block: a
	// datagram that cannot be delivered is dropped, as UDP would drop it.
	WriteTo(b []byte, addr string) (time.Time, error)
	// PacketCh delivers received datagrams.
	PacketCh() <-chan *Packet
	// DialTimeout opens a stream to addr.
	DialTimeout(addr string, timeout time.Duration) (net.Conn, error)
	// StreamCh delivers accepted streams.
	StreamCh() <-chan net.Conn
	// Shutdown stops delivery. Packets and streams sent to the node
	// afterwards are dropped and refused.
	Shutdown() error
}

// adapter presents a Transport to memberlist. Received packets are copied
// from the Transport's channel to memberlist's by a goroutine that ends at
// Shutdown.
type adapter struct {
	t       Transport
	packets chan *memberlist.Packet
	stop    chan struct{}
	done    sync.WaitGroup
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*adapter)(nil)

func newAdapter(t Transport) *adapter {
	a := &adapter{t: t, packets: make(chan *memberlist.Packet), stop: make(chan struct{})}
	a.done.Go(func() {
		for {
			select {
			case <-a.stop:
				return
			case p := <-t.PacketCh():
				select {
				case a.packets <- &memberlist.Packet{Buf: p.Buf, From: p.From, Timestamp: p.Timestamp}:
				case <-a.stop:
					return
				}
			}
		}
	})
	return a
}

func (a *adapter) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		return net.ParseIP(ip), port, nil
	}
	local, localPort := a.t.LocalAddr()
	return local, localPort, nil
}

func (a *adapter) WriteTo(b []byte, addr string) (time.Time, error) { return a.t.WriteTo(b, addr) }

func (a *adapter) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	return a.t.WriteTo(b, addr.Addr)
}

func (a *adapter) PacketCh() <-chan *memberlist.Packet { return a.packets }

func (a *adapter) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return a.t.DialTimeout(addr, timeout)
}

func (a *adapter) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return a.t.DialTimeout(addr.Addr, timeout)
}

func (a *adapter) StreamCh() <-chan net.Conn { return a.t.StreamCh() }

func (a *adapter) Shutdown() error {
	var err error
	a.once.Do(func() {
		err = a.t.Shutdown()
		close(a.stop)
		a.done.Wait()
	})
	return err
}
