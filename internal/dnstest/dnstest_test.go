package dnstest

import (
	"context"
	"fmt"
	"net"
	"testing"
)

// TestLargeAnswerOverTCP asks Go's resolver, pointed at the server, for a
// name with 2,000 A records: the UDP answer is truncated and the resolver
// gets all 2,000 over TCP.
func TestLargeAnswerOverTCP(t *testing.T) {
	var ips []string
	for i := range 2000 {
		ips = append(ips, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	s := Start(t, map[string][]string{"big.test.": ips, "small.test.": ips[:3]})
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr)
	}}
	got, err := r.LookupHost(context.Background(), "small.test")
	if err != nil || len(got) != 3 || s.TCP.Load() != 0 {
		t.Fatalf("small.test: %d addresses (%v), %d queries over TCP; want 3 over UDP", len(got), err, s.TCP.Load())
	}
	got, err = r.LookupHost(context.Background(), "big.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ips) || s.Truncated.Load() == 0 || s.TCP.Load() == 0 {
		t.Fatalf("big.test: %d addresses, %d UDP answers truncated, %d queries over TCP; want %d through TCP", len(got), s.Truncated.Load(), s.TCP.Load(), len(ips))
	}
	if _, err := r.LookupHost(context.Background(), "missing.test"); err == nil {
		t.Fatal("an unknown name must not resolve")
	}
}
