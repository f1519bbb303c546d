package testcluster

import (
	"context"
	"net"
	"slices"
	"sync"
)

// DNS is a fake DNS server for seed names: it answers what the test says,
// and the test may change the answer at any time (partial lists, changing
// lists, no answer). It implements gossip.Resolver and is safe for
// concurrent use.
type DNS struct {
	mu      sync.Mutex // guards records and queries
	records map[string][]string
	queries int
}

// NewDNS returns a DNS server with no records.
func NewDNS() *DNS { return &DNS{records: make(map[string][]string)} }

// Set makes name resolve to ips; with none, the name does not exist.
func (d *DNS) Set(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(ips) == 0 {
		delete(d.records, name)
		return
	}
	d.records[name] = slices.Clone(ips)
}

// Queries returns how many lookups have been answered.
func (d *DNS) Queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries
}

// LookupHost implements gossip.Resolver.
func (d *DNS) LookupHost(_ context.Context, host string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries++
	ips, ok := d.records[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return slices.Clone(ips), nil
}
