// Package dnstest runs a DNS server on loopback for tests, as
// net/http/httptest runs an HTTP one: it answers A queries for the names it
// is given over UDP and TCP on one port, and, as a real server does,
// truncates a UDP answer that does not fit the client's buffer (setting the
// TC bit) so that the client asks again over TCP.
package dnstest

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running DNS server. Its fields are safe to read while it
// runs.
type Server struct {
	// Addr is the "127.0.0.1:port" it answers at, over UDP and TCP.
	Addr string
	// UDP, Truncated and TCP count queries asked over UDP, UDP answers
	// truncated, and queries asked over TCP.
	UDP, Truncated, TCP atomic.Int64
}

// Start serves records (fully qualified name, with the final dot → IPv4
// addresses) until the test ends. Other names get NXDOMAIN; other query
// types of a known name an empty answer.
func Start(t testing.TB, records map[string][]string) *Server {
	t.Helper()
	pc, ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: pc.LocalAddr().String()}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			ips, ok := records[q.Name]
			if !ok {
				m.Rcode = dns.RcodeNameError
				continue
			}
			if q.Qtype != dns.TypeA {
				continue
			}
			for _, ip := range ips {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
					A:   net.ParseIP(ip),
				})
			}
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			s.UDP.Add(1)
			size := dns.MinMsgSize // 512 bytes without EDNS0
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
			if m.Truncated {
				s.Truncated.Add(1)
			}
		} else {
			s.TCP.Add(1)
		}
		w.WriteMsg(m)
	})
	servers := []*dns.Server{{PacketConn: pc, Handler: mux}, {Listener: ln, Handler: mux}}
	var wg sync.WaitGroup
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { srv.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		for _, srv := range servers {
			srv.Shutdown()
		}
		wg.Wait()
	})
	return s
}

// listen opens a UDP and a TCP socket on one free port of 127.0.0.1. The
// port the UDP socket got may be taken for TCP: then it tries another.
func listen() (net.PacketConn, net.Listener, error) {
	var err error
	for range 20 {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, nil, err
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			return pc, ln, nil
		}
		pc.Close()
	}
	return nil, nil, fmt.Errorf("no port of 127.0.0.1 free for both UDP and TCP: %w", err)
}
