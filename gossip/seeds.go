package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// seedHostPort splits a seed entry, defaulting the port. An IPv6 address
// may come bracketed without a port ("[::1]").
func seedHostPort(seed string, defaultPort int) (host, port string, err error) {
	host, port = seed, strconv.Itoa(defaultPort)
	if h, p, err := net.SplitHostPort(seed); err == nil {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return "", "", fmt.Errorf("seed %q: bad port", seed)
		}
		host, port = h, p
	} else if len(seed) > 2 && seed[0] == '[' && seed[len(seed)-1] == ']' {
		host = seed[1 : len(seed)-1]
	}
	if host == "" || host == "[]" {
		return "", "", fmt.Errorf("seed %q: no host", seed)
	}
	return host, port, nil
}

// ValidateSeed reports whether a seed entry is well formed, for flag
// checking.
func ValidateSeed(seed string) error {
	_, _, err := seedHostPort(seed, 1)
	return err
}

// joinOnce resolves the seeds and joins a sample of the addresses that are
// not live members yet and of the failed members still remembered. failed
// counts the attempts before it that found no peer, in a row; it returns
// that count after this attempt. Each attempt logs one line: a lone node
// retrying (a rolling restart, a cold start) says so at INFO on its first
// failed attempt and when it finds a peer, and at DEBUG in between.
func (g *Gossip) joinOnce(ctx context.Context, failed int) int {
	seedAddrs, err := resolveSeeds(ctx, g.cfg.Resolver, g.cfg.Seeds, g.defaultPort())
	if err != nil {
		g.cfg.Logger.Warn("resolving gossip seeds", "err", err)
	}
	now := time.Now()
	g.view.forget(now, g.cfg.ReconnectTimeout)
	targets := joinTargets(seedAddrs, g.view.liveAddrs(), g.view.failedAddrs(now, g.cfg.ReconnectTimeout), g.Addr())
	targets = sample(targets, g.cfg.SeedSample, g.cfg.Rand)
	if len(targets) == 0 {
		return failed
	}
	// One address at a time, so that a node told to stop does not first
	// wait out the TCP timeout of every target that does not answer (16 ×
	// 10s on a LAN profile, with a sample of blackholed addresses).
	n, answered := 0, 0
	var last error
	for _, a := range targets {
		if ctx.Err() != nil {
			return failed
		}
		k, err := g.ml.Join([]string{a})
		n += k
		if k > 0 {
			answered++
		}
		if err != nil {
			last = err
		}
	}
	if n > 0 {
		g.joins.WithLabelValues("ok").Inc()
		level := slog.LevelDebug
		if failed > 0 {
			level = slog.LevelInfo // the end of what the first failure told
		}
		g.cfg.Logger.Log(ctx, level, "joined", "tried", len(targets), "answered", answered, "members", n, "failed_attempts", failed)
		return 0
	}
	g.joins.WithLabelValues("error").Inc()
	level := slog.LevelInfo
	if failed > 0 {
		level = slog.LevelDebug // told at INFO on the first
	}
	g.cfg.Logger.Log(ctx, level, "join found no peer yet", "tried", len(targets), "answered", 0, "attempt", failed+1, "last_err", lastJoinError(last))
	return failed + 1
}

// lastJoinError returns the last of the errors err holds: memberlist's
// Join returns a list (hashicorp/go-multierror), printed over several
// lines, of which one address's error is the last.
func lastJoinError(err error) error {
	if list, ok := err.(interface{ WrappedErrors() []error }); ok {
		if errs := list.WrappedErrors(); len(errs) > 0 {
			return errs[len(errs)-1]
		}
	}
	return err
}

// joinTargets is the pure step of the join loop: the seed addresses that
// are not live members, plus remembered failed members, without this node,
// each once, in a stable order.
func joinTargets(seeds []string, live map[string]bool, failed []string, self string) []string {
	var out []string
	for _, a := range append(slices.Clone(seeds), failed...) {
		if a != self && !live[a] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
