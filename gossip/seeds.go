package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"time"
)

// Resolver looks up a name's addresses (A and AAAA records). *net.Resolver
// implements it.
type Resolver interface {
	// LookupHost returns the name's addresses as IP strings. It may block
	// until ctx ends.
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// NewResolver returns a Resolver that asks the DNS server at server
// ("host:port") instead of the system's configured ones.
func NewResolver(server string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

// resolveTimeout bounds one seed lookup.
const resolveTimeout = 5 * time.Second

// resolveSeeds turns seed entries ("name[:port]", "ip[:port]", "[ipv6]:port")
// into "ip:port" join addresses: every address of every name. Entries that
// fail to resolve are reported in the error; the others are still returned.
func resolveSeeds(ctx context.Context, r Resolver, seeds []string, defaultPort int) ([]string, error) {
	var out []string
	var errs []error
	for _, seed := range seeds {
		host, port, err := seedHostPort(seed, defaultPort)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			out = append(out, net.JoinHostPort(ip.String(), port))
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		ips, err := r.LookupHost(lctx, host)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve seed %q: %w", host, err))
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), errors.Join(errs...)
}

// sample returns at most n of addrs (all of them if n is negative), drawn
// at random by r, in their order in addrs. A seed name with 2,000 records
// is joined through 16 of them, not 2,000 full state exchanges.
func sample(addrs []string, n int, r *rand.Rand) []string {
	if n < 0 || len(addrs) <= n {
		return addrs
	}
	idx := r.Perm(len(addrs))[:n]
	slices.Sort(idx)
	out := make([]string, n)
	for i, j := range idx {
		out[i] = addrs[j]
	}
	return out
}

// seedHostPort splits a seed entry, defaulting the port.
func seedHostPort(seed string, defaultPort int) (host, port string, err error) {
	if h, p, err := net.SplitHostPort(seed); err == nil {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return "", "", fmt.Errorf("seed %q: bad port", seed)
		}
		return h, p, nil
	}
	if seed == "" {
		return "", "", errors.New("empty seed")
	}
	return seed, strconv.Itoa(defaultPort), nil
}

// ValidateSeed reports whether a seed entry is well formed, for flag
// checking.
func ValidateSeed(seed string) error {
	_, _, err := seedHostPort(seed, 1)
	return err
}
