package gossip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sluicerl/sluice/internal/dnstest"
)

func TestSample(t *testing.T) {
	addrs := make([]string, 100)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.0.%d:7946", i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	if got := sample(addrs[:16], 16, r); !slices.Equal(got, addrs[:16]) {
		t.Fatalf("16 addresses sampled to 16: %v, want all in order", got)
	}
	if got := sample(addrs, -1, r); !slices.Equal(got, addrs) {
		t.Fatal("a negative sample size must keep every address")
	}
	got := sample(addrs, 16, r)
	if len(got) != 16 || len(slices.Compact(slices.Clone(got))) != 16 {
		t.Fatalf("want 16 distinct addresses, got %v", got)
	}
	for i, a := range got {
		if !slices.Contains(addrs, a) || (i > 0 && slices.Index(addrs, a) < slices.Index(addrs, got[i-1])) {
			t.Fatalf("sample %v: not addresses of the input in its order", got)
		}
	}
}

// TestJoinSampleFromTwoThousandRecords resolves a seed name with 2,000 A
// records through a real DNS server on loopback, whose UDP answer is
// truncated, as joinOnce does: the resolver gets all 2,000 over TCP, and
// each join attempt contacts 16 of them, never this node's own address,
// drawn from the whole answer.
func TestJoinSampleFromTwoThousandRecords(t *testing.T) {
	var ips []string
	for i := range 2000 {
		ips = append(ips, fmt.Sprintf("10.1.%d.%d", i/250, i%250+1))
	}
	dns := dnstest.Start(t, map[string][]string{"sluice.test.": ips})
	addrs, err := resolveSeeds(context.Background(), NewResolver(dns.Addr), []string{"sluice.test"}, 7946)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != len(ips) || dns.Truncated.Load() == 0 || dns.TCP.Load() == 0 {
		t.Fatalf("resolved %d addresses (%d UDP answers truncated, %d TCP queries); want %d, over TCP", len(addrs), dns.Truncated.Load(), dns.TCP.Load(), len(ips))
	}
	self := "10.1.3.7:7946"
	r := rand.New(rand.NewPCG(3, 4))
	seen := make(map[string]bool)
	for range 500 {
		targets := sample(joinTargets(addrs, nil, nil, self), 16, r)
		if len(targets) != 16 || slices.Contains(targets, self) {
			t.Fatalf("join targets %v: want 16, without this node's %s", targets, self)
		}
		for _, a := range targets {
			seen[a] = true
		}
	}
	// 500 draws of 16 of 1,999 reach about 98% of them.
	if len(seen) < 1900 {
		t.Fatalf("500 samples reached %d of the 1,999 other addresses; want them drawn from all", len(seen))
	}
}
