// Command sluice runs one sluice node: the local rate-limit API for the
// application beside it, and the admin endpoints for health and metrics.
//
// Every flag has an environment equivalent: --http-addr is SLUICE_HTTP_ADDR.
// A flag given on the command line wins over the environment.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sluice:", err)
			os.Exit(1)
		}
	}
}

// options are the node's settings, from flags and the environment.
type options struct {
	httpAddr        string
	adminAddr       string
	rulesPath       string
	maxKeys         int
	denyStatus      int
	maxWait         time.Duration
	shutdownTimeout time.Duration
	logLevel        string
	logFormat       string

	nodeName       string
	gossipAddr     string
	advertiseAddr  string
	seeds          listFlag
	dnsServer      string
	gossipKeys     listFlag
	clusterLabel   string
	insecureGossip bool
	gossipProfile  string
	rejoinInterval time.Duration
	peerAddr       string

	dataDir            string
	recoverDataDir     bool
	gossipSyncInterval time.Duration
	gossipMaxMembers   int
	leaseThreshold     float64
	leaseTerm          time.Duration
	shadow             bool
}

// listFlag is a repeatable flag; from the environment it takes a
// comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "`host:port` of the API the application calls; keep it on loopback")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:8081", "`host:port` of /healthz, /readyz and /metrics")
	fs.StringVar(&o.rulesPath, "rules", "", "rules `file` (YAML), or a directory of *.yaml files; reloaded on change and on SIGHUP")
	fs.IntVar(&o.maxKeys, "max-keys", 1_000_000, "most buckets held in memory; past it the least recently used are evicted")
	fs.IntVar(&o.denyStatus, "deny-status", 429, "HTTP status of a denied check: 429, or 403 for nginx auth_request")
	fs.DurationVar(&o.maxWait, "max-wait", 30*time.Second, "longest max_wait that /v1/wait accepts")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a shutdown waits for requests in flight")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	hostname, _ := os.Hostname()
	fs.StringVar(&o.nodeName, "node-name", hostname, "this node's `name` in the cluster; unique among live nodes (a restart under the same name is a new life of the node)")
	fs.StringVar(&o.gossipAddr, "gossip-addr", "0.0.0.0:7946", "`host:port` for gossip over UDP and TCP; peers must reach it")
	fs.StringVar(&o.advertiseAddr, "advertise-addr", "", "`host:port` peers reach this node's gossip at, if not the gossip address (NAT, containers)")
	fs.Var(&o.seeds, "seed", "`name[:port]` or ip[:port] to join through; repeatable; a name is resolved to all its A/AAAA records and re-resolved periodically (env: comma-separated)")
	fs.StringVar(&o.dnsServer, "dns-server", "", "`host:port` of the DNS server that resolves seeds (default: the system's)")
	fs.Var(&o.gossipKeys, "gossip-key", "base64 AES `key` (16, 24 or 32 bytes) encrypting gossip; repeatable, the first encrypts, the others are accepted (env: comma-separated)")
	fs.StringVar(&o.clusterLabel, "cluster-label", "", "`label` fencing the cluster: nodes with another label cannot join")
	fs.BoolVar(&o.insecureGossip, "insecure-gossip", false, "allow seeds without a gossip key: anyone who reaches the gossip port can join and forge membership")
	fs.StringVar(&o.gossipProfile, "gossip-profile", "lan", "failure-detection timings: lan, wan or local")
	fs.DurationVar(&o.rejoinInterval, "rejoin-interval", 30*time.Second, "how often seeds are re-resolved and failed peers re-joined")
	fs.StringVar(&o.peerAddr, "peer-addr", "0.0.0.0:7947", "`host:port` where this node answers checks forwarded to it as a key's owner (TCP); peers reach it on the host of the gossip address")
	fs.StringVar(&o.dataDir, "data-dir", "sluice-data", "`directory` where rules set through the API are stored, so they survive restarts; empty: this node refuses rule changes through its API")
	fs.BoolVar(&o.recoverDataDir, "recover-data-dir", false, "if the rules database in --data-dir is damaged or empty, move it aside (renamed rules.db.corrupt-<unix time>, never deleted) and start with no stored API rules, taking them from peers; without it, such a node refuses to start")
	fs.DurationVar(&o.gossipSyncInterval, "gossip-sync-interval", 50*time.Millisecond, "how often a node tells its peers what it admitted in gossip mode; bounds how long they decide without knowing")
	fs.IntVar(&o.gossipMaxMembers, "gossip-max-members", 8, "largest cluster in which sync auto gossips counters; above it each key is decided by its owner on the hash ring")
	fs.Float64Var(&o.leaseThreshold, "lease-threshold", 20, "checks per second of one key on this node from which it takes token leases from the key's owner (owner mode) and decides locally; 0 or less: never")
	fs.DurationVar(&o.leaseTerm, "lease-term", 250*time.Millisecond, "how long a token lease lasts before unspent tokens go back to the owner")
	fs.BoolVar(&o.shadow, "shadow", false, "shadow mode for the whole node: every check is decided, counted and reported, and allowed (a dark launch); rules can also say shadow: true")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sluice [flags]\n\nRuns a sluice rate-limit node. Every flag can also be set through the\nenvironment: --http-addr as SLUICE_HTTP_ADDR, and so on; a flag on the\ncommand line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SLUICE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !set[f.Name] && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	switch {
	case o.denyStatus != 429 && o.denyStatus != 403:
		return o, fmt.Errorf("--deny-status must be 429 or 403, got %d", o.denyStatus)
	case o.maxKeys <= 0:
		return o, fmt.Errorf("--max-keys must be positive, got %d", o.maxKeys)
	case o.maxWait <= 0:
		return o, fmt.Errorf("--max-wait must be positive, got %v", o.maxWait)
	case o.nodeName == "":
		return o, errors.New("--node-name is required (the hostname could not be read)")
	case o.rejoinInterval <= 0:
		return o, fmt.Errorf("--rejoin-interval must be positive, got %v", o.rejoinInterval)
	case o.gossipSyncInterval <= 0:
		return o, fmt.Errorf("--gossip-sync-interval must be positive, got %v", o.gossipSyncInterval)
	case o.gossipMaxMembers < 1:
		return o, fmt.Errorf("--gossip-max-members must be at least 1, got %d", o.gossipMaxMembers)
	case o.leaseTerm <= 0:
		return o, fmt.Errorf("--lease-term must be positive, got %v", o.leaseTerm)
	case len(o.seeds) > 0 && len(o.gossipKeys) == 0 && !o.insecureGossip:
		return o, errors.New("--seed without --gossip-key: set a gossip key (every node the same), or --insecure-gossip to run unencrypted")
	}
	for _, seed := range o.seeds {
		if err := gossip.ValidateSeed(seed); err != nil {
			return o, fmt.Errorf("--seed: %w", err)
		}
	}
	return o, nil
}

// gossipConfig builds the membership settings from the options.
func gossipConfig(o options, log *slog.Logger) (*gossip.Config, error) {
	cfg := &gossip.Config{
		Name:           o.nodeName,
		BindAddr:       o.gossipAddr,
		AdvertiseAddr:  o.advertiseAddr,
		Seeds:          o.seeds,
		Label:          o.clusterLabel,
		Insecure:       o.insecureGossip,
		Profile:        o.gossipProfile,
		RejoinInterval: o.rejoinInterval,
		Meta:           gossip.Meta{API: gossip.APIVersion, Incarnation: time.Now().UnixNano()},
		Jitter:         func(d time.Duration) time.Duration { return rand.N(d + 1) },
	}
	if o.dnsServer != "" {
		cfg.Resolver = gossip.NewResolver(o.dnsServer)
	}
	for i, k := range o.gossipKeys {
		key, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return nil, fmt.Errorf("--gossip-key #%d: not base64: %w", i+1, err)
		}
		cfg.Keys = append(cfg.Keys, key)
	}
	if len(cfg.Keys) == 0 {
		log.Warn("gossip is not encrypted: any host that reaches the gossip port can read membership and join; set --gossip-key", "gossip_addr", o.gossipAddr)
	}
	return cfg, nil
}

// leaseThreshold maps the flag to LeaseConfig.Threshold: 0 or less turns
// leases off (in the config, zero means the default).
func leaseThreshold(v float64) float64 {
	if v <= 0 {
		return -1
	}
	return v
}

func newLogger(o options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be json or text, got %q", o.logFormat)
}

// run runs a node until ctx ends, then shuts it down in order: not ready,
// drain the API, stop the admin server.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gcfg, err := gossipConfig(o, log)
	if err != nil {
		return err
	}
	peerLn, err := net.Listen("tcp", o.peerAddr)
	if err != nil {
		return fmt.Errorf("listen on --peer-addr: %w", err)
	}
	defer peerLn.Close()
	gcfg.Meta.PeerAddr = advertisedPeerAddr(peerLn.Addr().(*net.TCPAddr))
	var persist *rules.Persist
	if o.dataDir != "" {
		if persist, err = openPersist(o, time.Now(), log); err != nil {
			return err
		}
		defer persist.Close()
	} else {
		log.Warn("no --data-dir: this node refuses rule changes through its API; changes made on peers are kept in memory only")
	}
	node, err := cluster.New(cluster.Config{
		Store:      bucket.StoreConfig{MaxKeys: o.maxKeys},
		Metrics:    reg,
		Logger:     log,
		Gossip:     gcfg,
		Peer:       cluster.PeerConfig{Listener: peerLn},
		GossipSync: cluster.GossipSyncConfig{Interval: o.gossipSyncInterval, MaxMembers: o.gossipMaxMembers},
		Leases:     cluster.LeaseConfig{Threshold: leaseThreshold(o.leaseThreshold), Term: o.leaseTerm},
		Shadow:     o.shadow,
		Persist:    persist,
	})
	if err != nil {
		return err
	}

	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_rules_reloads_total",
		Help: "Attempts to load changed rules, by result (ok or error); on error the rules in force stay.",
	}, []string{"result"})
	reg.MustRegister(reloads)
	var watcher *rules.Watcher
	if o.rulesPath == "" {
		node.SetRules(&rules.Set{})
	} else {
		watcher, err = rules.NewWatcher(o.rulesPath, func(s *rules.Set, err error) {
			if err != nil {
				reloads.WithLabelValues("error").Inc()
				log.Error("rules rejected; the rules in force stay", "path", o.rulesPath, "err", err)
				return
			}
			reloads.WithLabelValues("ok").Inc()
			node.SetRules(s)
			log.Info("rules loaded", "path", o.rulesPath, "rules", s.Len())
		})
		if err != nil {
			return err
		}
		defer watcher.Close() // Run closes it too; this covers an early return
		s, _, err := watcher.Load()
		if err != nil {
			return fmt.Errorf("load rules: %w", err)
		}
		node.SetRules(s)
		log.Info("rules loaded", "path", o.rulesPath, "rules", s.Len())
	}

	// Listen first, so a bad address fails at once and port 0 can be used.
	apiLn, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-addr: %w", err)
	}
	defer apiLn.Close()
	adminLn, err := net.Listen("tcp", o.adminAddr)
	if err != nil {
		return fmt.Errorf("listen on --admin-addr: %w", err)
	}
	defer adminLn.Close()

	var draining atomic.Bool
	api := transport.NewHTTPServer(transport.NewServer(transport.ServerConfig{
		Limiter:    node,
		DenyStatus: o.denyStatus,
		MaxWait:    o.maxWait,
		Logger:     log,
		Registerer: reg,
		Membership: node,
		Rules:      node,
	}), log)
	admin := transport.NewHTTPServer(transport.NewAdmin(transport.AdminConfig{
		Ready:    func() bool { return !draining.Load() && node.Ready() },
		Gatherer: reg,
		Keyring:  node,
		Status:   node,
	}), log)

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return serve(api, apiLn) })
	g.Go(func() error { return serve(admin, adminLn) })
	nodeCtx, stopNode := context.WithCancel(gctx)
	defer stopNode()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nodeCtx) }()
	if watcher != nil {
		g.Go(func() error { return watcher.Run(gctx) })
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-hup:
					watcher.Reload()
				}
			}
		})
	}
	log.Info("sluice started", "http_addr", apiLn.Addr().String(), "admin_addr", adminLn.Addr().String(),
		"node", node.Name(), "gossip_addr", node.GossipAddr())

	var errs []error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-gctx.Done():
		// a server failed; shut the rest down and report it
	case err := <-nodeDone:
		nodeDone <- err // the node stopped on its own; report it below
	}
	// Not ready, then leave the cluster (peers stop counting on this node
	// at once), then drain the API: checks in flight are still answered.
	draining.Store(true)
	stopNode()
	if err := <-nodeDone; err != nil {
		errs = append(errs, fmt.Errorf("node: %w", err))
	}
	log.Info("left the cluster")
	shutCtx, cancelShut := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancelShut()
	for _, srv := range []*http.Server{api, admin} {
		if err := srv.Shutdown(shutCtx); err != nil {
			// Requests still in flight (long waits): cut them off; their
			// reserved tokens are given back as their contexts end.
			errs = append(errs, fmt.Errorf("drain: %w", err), srv.Close())
		}
	}
	cancel()
	errs = append(errs, g.Wait())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// openPersist opens the rules database in --data-dir. A damaged one stops
// the node, unless --recover-data-dir is given: then it is moved aside and
// the node starts with an empty database, logging at error level where the
// damaged file went. The rules come back from peers in the gossip state
// exchange, as for any node that joins.
func openPersist(o options, now time.Time, log *slog.Logger) (*rules.Persist, error) {
	p, err := rules.OpenPersist(o.dataDir)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, rules.ErrLocked):
		return nil, fmt.Errorf("--data-dir: %w: is another node using this directory? Give each node its own", err)
	case !errors.Is(err, rules.ErrCorrupt):
		return nil, fmt.Errorf("--data-dir: %w", err)
	case !o.recoverDataDir:
		return nil, fmt.Errorf("--data-dir: %w. The node stops rather than start without the API rules stored there: "+
			"move the file aside (rename it, keep it), or start once with --recover-data-dir to have the node do that; "+
			"either way the node starts with no stored API rules and takes them from its peers (docs/troubleshooting.md)", err)
	}
	moved, merr := rules.MoveAside(o.dataDir, now)
	if merr != nil {
		return nil, fmt.Errorf("--recover-data-dir: %w (after: %w)", merr, err)
	}
	log.Error("rules database damaged: moved it aside; starting with no stored API rules, which come back from peers that have them",
		"moved_to", moved, "err", err)
	if len(o.seeds) == 0 {
		log.Warn("no --seed: unless peers join this node, the API rules that were in the damaged database are lost; set them again through the API", "moved_to", moved)
	}
	if p, err = rules.OpenPersist(o.dataDir); err != nil {
		return nil, fmt.Errorf("--data-dir, after moving the damaged database to %s: %w", moved, err)
	}
	return p, nil
}

// advertisedPeerAddr is the peer address put in the node's metadata. A
// wildcard host is left out (":7947"): peers then use the host they reach
// the node's gossip at.
func advertisedPeerAddr(a *net.TCPAddr) string {
	port := strconv.Itoa(a.Port)
	if a.IP == nil || a.IP.IsUnspecified() {
		return ":" + port
	}
	return net.JoinHostPort(a.IP.String(), port)
}

// serve serves srv on ln until srv is shut down.
func serve(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
