package transport

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// TestPeerCloseDuringDial: Close while a check's dial is under way
// returns, and leaves no connection open, once the dial completes.
func TestPeerCloseDuringDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newPipeNet(t, PeerServerConfig{IdleTimeout: -1})
		release := make(chan struct{})
		c := NewPeerClient(PeerClientConfig{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			<-release
			return n.dial(ctx, addr)
		}})
		go c.Check(context.Background(), "a", reapCheck)
		synctest.Wait() // the dial waits
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		synctest.Wait()
		close(release)
		select {
		case <-closed:
		case <-time.After(time.Hour):
			t.Fatal("Close did not return: the connection dialled during it stays open")
		}
		if got := n.opened(""); got != 0 {
			t.Fatalf("%d connections open after Close", got)
		}
	})
}

// TestPeerForgetDuringDial: a peer forgotten while its dial is under way
// leaves no connection open once the dial completes.
func TestPeerForgetDuringDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newPipeNet(t, PeerServerConfig{IdleTimeout: -1})
		release := make(chan struct{})
		c := newClient(t, PeerClientConfig{IdleTimeout: -1, Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			<-release
			return n.dial(ctx, addr)
		}})
		go c.Check(context.Background(), "a", reapCheck)
		synctest.Wait()
		c.Forget("a")
		close(release)
		synctest.Wait()
		if got, gauge := n.opened(""), c.open.Load(); got != 0 || gauge != 0 {
			t.Fatalf("%d connections open, gauge %d, after the peer was forgotten", got, gauge)
		}
	})
}

// TestPeerTinyIdleTimeout: an IdleTimeout under 4ns does not panic.
func TestPeerTinyIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newPipeNet(t, PeerServerConfig{})
		c := newClient(t, PeerClientConfig{Dial: n.dial, IdleTimeout: time.Nanosecond})
		mustCheck(t, c, "a")
		time.Sleep(time.Second)
		synctest.Wait()
		assertOpen(t, c, n, 0)
	})
}
