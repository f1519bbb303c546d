package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/transport"
)

// options are the node's settings, from flags and the environment.
type options struct {
	httpAddr        string
	adminAddr       string
	grpcAddr        string
	socketMode      iofs.FileMode
	rulesPath       string
	envoyConfig     string
	grpcHeaders     bool
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
	seedSample     int
	dnsServer      string
	gossipKeys     listFlag
	clusterLabel   string
	insecureGossip bool
	gossipProfile  string
	rejoinInterval time.Duration
	peerAddr       string
	peerIdle       time.Duration
	peerMaxConns   int
	peerMaxAccept  int

	dataDir            string
	dataDirDefault     bool // --data-dir not given: derived from the node name (datadir.go)
	recoverDataDir     bool
	gossipSyncInterval time.Duration
	gossipMaxMembers   int
	gossipModeMax      int
	leaseThreshold     float64
	leaseTerm          time.Duration
	partitionWindow    time.Duration
	shadow             bool
	traceKeys          bool

	adminToken  string
	showVersion bool // --version: print the build and exit
}

// modeFlag is a file mode written in octal, as chmod takes it.
type modeFlag iofs.FileMode

func (m *modeFlag) String() string { return fmt.Sprintf("%04o", uint32(*m)) }

func (m *modeFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 || n == 0 {
		return fmt.Errorf("want permission bits in octal, such as 0660, got %q", v)
	}
	*m = modeFlag(n)
	return nil
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
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "`host:port` of the API the application calls, on loopback; or unix:/path for a Unix domain socket")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:8081", "`host:port` of /healthz, /readyz and /metrics; or unix:/path")
	o.socketMode = 0o660
	fs.Var((*modeFlag)(&o.socketMode), "socket-mode", "file `mode` (octal) of the Unix sockets of --http-addr and --admin-addr: who may connect")
	fs.StringVar(&o.adminToken, "admin-token", "", "`token` the admin port's key endpoints (inspect, reset, top denied keys) require as \"Authorization: Bearer <token>\"; without it they answer loopback clients only")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:8082", "`host:port` of Envoy's rate limit service (gRPC envoy.service.ratelimit.v3) and gRPC health; keep it on loopback; empty: off")
	fs.StringVar(&o.envoyConfig, "envoy-config", "", "Envoy rate limit configuration in envoyproxy/ratelimit's YAML format: a `file`, or a directory of *.yaml files, one domain each; reloaded on change and on SIGHUP")
	fs.BoolVar(&o.grpcHeaders, "grpc-response-headers", false, "add RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset to Envoy's answers (response_headers_to_add), as envoyproxy/ratelimit's LIMIT_RESPONSE_HEADERS_ENABLED")
	fs.StringVar(&o.rulesPath, "rules", "", "rules `file` (YAML), or a directory of *.yaml files; reloaded on change and on SIGHUP")
	fs.IntVar(&o.maxKeys, "max-keys", 1_000_000, "most buckets held in memory; past it the least recently used are evicted")
	fs.IntVar(&o.denyStatus, "deny-status", 429, "HTTP status of a denied check: 429, or 403 for nginx auth_request")
	fs.DurationVar(&o.maxWait, "max-wait", 30*time.Second, "longest max_wait that /v1/wait accepts")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "budget of a graceful shutdown: handing off the buckets this node owns, answering the application until it has not asked for a second (at most half of what is left), then draining requests in flight")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	hostname, _ := os.Hostname()
	fs.StringVar(&o.nodeName, "node-name", hostname, "this node's `name` in the cluster; unique among live nodes (a restart under the same name is a new life of the node)")
	fs.StringVar(&o.gossipAddr, "gossip-addr", "0.0.0.0:7946", "`host:port` for gossip over UDP and TCP; peers must reach it")
	fs.StringVar(&o.advertiseAddr, "advertise-addr", "", "`host:port` peers reach this node's gossip at, if not the gossip address (NAT, containers)")
	fs.Var(&o.seeds, "seed", "`name[:port]` or ip[:port] to join through; repeatable; a name is resolved to all its A/AAAA records and re-resolved periodically (env: comma-separated)")
	fs.IntVar(&o.seedSample, "seed-sample", 16, "most seed addresses one join attempt contacts, drawn at random from all the seeds resolve to (one answer is enough; gossip spreads the rest)")
	fs.StringVar(&o.dnsServer, "dns-server", "", "`host:port` of the DNS server that resolves seeds (default: the system's)")
	fs.Var(&o.gossipKeys, "gossip-key", "base64 AES `key` (16, 24 or 32 bytes) encrypting gossip; repeatable, the first encrypts, the others are accepted (env: comma-separated)")
	fs.StringVar(&o.clusterLabel, "cluster-label", "", "`label` fencing the cluster: nodes with another label cannot join")
	fs.BoolVar(&o.insecureGossip, "insecure-gossip", false, "allow seeds without a gossip key: anyone who reaches the gossip port can join and forge membership")
	fs.StringVar(&o.gossipProfile, "gossip-profile", "lan", "failure-detection timings: lan, wan or local")
	fs.DurationVar(&o.rejoinInterval, "rejoin-interval", 30*time.Second, "how often seeds are re-resolved and failed peers re-joined")
	fs.StringVar(&o.peerAddr, "peer-addr", "0.0.0.0:7947", "`host:port` where this node answers checks forwarded to it as a key's owner (TCP); peers reach it on the host of the gossip address")
	fs.DurationVar(&o.peerIdle, "peer-idle-timeout", transport.DefaultPeerIdleTimeout, "how long a connection to a peer may go unused before it is closed (the next check to that peer dials again); a peer closes connections to it silent for twice this, so give every node the same; at least 1s, or 0: never")
	fs.IntVar(&o.peerMaxConns, "peer-max-conns", transport.DefaultPeerMaxConns, "most connections open to peers, to forward checks to their owners; one more closes the least recently used idle one, and if all are busy the bound is passed until one falls idle; 0: no bound")
	fs.IntVar(&o.peerMaxAccept, "peer-max-accepted", transport.DefaultPeerMaxAccepted, "most connections accepted from peers kept open (they forward checks to this node as owner); above it the least recently active idle one is closed, at this node's request to its peer, so no check on it is lost; busy ones are not, so the bound is passed until they fall idle; 0: no bound")
	fs.StringVar(&o.dataDir, "data-dir", "", "`directory` where rules set through the API are stored, so they survive restarts (default: sluice-data/<node name>, one per node); given empty, this node refuses rule changes through its API")
	fs.BoolVar(&o.recoverDataDir, "recover-data-dir", false, "if the rules database in --data-dir is damaged or empty, move it aside (renamed rules.db.corrupt-<unix time>, never deleted) and start with no stored API rules, taking them from peers; without it, such a node refuses to start")
	fs.DurationVar(&o.gossipSyncInterval, "gossip-sync-interval", 50*time.Millisecond, "how often a node tells its peers what it admitted in gossip mode; bounds how long they decide without knowing")
	fs.IntVar(&o.gossipMaxMembers, "gossip-max-members", 8, "largest cluster in which sync auto gossips counters (every node tells every other what it admitted, each sync interval); above it each auto key is decided by its owner on the hash ring, so at fleet size (hundreds of members) auto gossips nothing. At most --gossip-mode-max-members: a larger value is capped to it. The cluster goes by the smallest value any live member has")
	fs.IntVar(&o.gossipModeMax, "gossip-mode-max-members", 32, "largest cluster in which rules set to sync gossip gossip counters; above it their keys are decided by their owners on the hash ring, as sync auto's are above --gossip-max-members, and the switch either way gives no key a fresh burst. Gossip sends every changed total to every member: N² datagrams, 40,000 a second from each node at 2,000 members, which this cap prevents. Within it, a node with such rules also sends every member an empty heartbeat each sync interval, so that a partition is heard within a second. The cluster goes by the smallest value any live member has")
	fs.Float64Var(&o.leaseThreshold, "lease-threshold", 20, "checks per second of one key on this node from which it takes token leases from the key's owner (owner mode) and decides locally; 0 or less: never. It counts one node's checks: a hot key spread over a fleet reaches each node at its rate divided by the members (10,000 a second over 2,000 nodes is 5 on each), so no node leases and the owner decides every check")
	fs.DurationVar(&o.partitionWindow, "partition-window", 5*time.Minute, "how long a member that failed (not left) still counts in the cluster's size: while fewer members are alive, cluster-wide limits are decided at the live members' share (0: a failed member stops counting at once)")
	fs.DurationVar(&o.leaseTerm, "lease-term", 250*time.Millisecond, "how long a token lease lasts before unspent tokens go back to the owner")
	fs.BoolVar(&o.shadow, "shadow", false, "shadow mode for the whole node: every check is decided, counted and reported, and allowed (a dark launch); rules can also say shadow: true")
	fs.BoolVar(&o.traceKeys, "trace-keys", false, "put the checked keys in span attributes (sluice.key); off, spans carry rule, sync mode, route and decision but never a key. Tracing itself is off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (OTLP over gRPC)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version, VCS revision and Go version, and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sluice [flags]\n       sluice ctl [flags] COMMAND (the command-line client; sluice ctl --help)\n\nRuns a sluice rate-limit node. Every flag can also be set through the\nenvironment: --http-addr as SLUICE_HTTP_ADDR, and so on; a flag on the\ncommand line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.showVersion {
		return o, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" {
			// An action, not a setting; and SLUICE_VERSION is the
			// release version deploy/docker/build.sh stamps.
			return
		}
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
	if !set["data-dir"] && getenv("SLUICE_DATA_DIR") == "" {
		o.dataDirDefault = true
		o.dataDir = nodeDataDir(o.nodeName)
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
	case o.seedSample < 1:
		return o, fmt.Errorf("--seed-sample must be at least 1, got %d", o.seedSample)
	case o.rejoinInterval <= 0:
		return o, fmt.Errorf("--rejoin-interval must be positive, got %v", o.rejoinInterval)
	case o.gossipSyncInterval <= 0:
		return o, fmt.Errorf("--gossip-sync-interval must be positive, got %v", o.gossipSyncInterval)
	case o.gossipMaxMembers < 1:
		return o, fmt.Errorf("--gossip-max-members must be at least 1, got %d", o.gossipMaxMembers)
	case o.gossipModeMax < 1:
		return o, fmt.Errorf("--gossip-mode-max-members must be at least 1, got %d", o.gossipModeMax)
	case o.partitionWindow < 0 || o.partitionWindow > 24*time.Hour:
		return o, fmt.Errorf("--partition-window must be between 0 and 24h (how long a failed member is kept), got %v", o.partitionWindow)
	case len(o.nodeName) > 256:
		return o, fmt.Errorf("--node-name must be at most 256 bytes, got %d", len(o.nodeName))
	case o.peerIdle < 0 || (o.peerIdle > 0 && o.peerIdle < time.Second):
		return o, fmt.Errorf("--peer-idle-timeout must be 0 (never) or at least 1s, got %v: below a second, connections are closed and dialled again between the checks of a steady load", o.peerIdle)
	case o.peerMaxConns < 0:
		return o, fmt.Errorf("--peer-max-conns must be 0 (no bound) or positive, got %d", o.peerMaxConns)
	case o.peerMaxAccept < 0:
		return o, fmt.Errorf("--peer-max-accepted must be 0 (no bound) or positive, got %d", o.peerMaxAccept)
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
		SeedSample:     o.seedSample,
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

// partitionWindow maps the flag, where 0 turns the memory off, to the
// Config field, where 0 means the default.
func partitionWindow(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// peerIdle maps --peer-idle-timeout, where 0 means never, to the client's
// and the server's IdleTimeout (the server's twice the client's), where 0
// means the default.
func peerIdle(d time.Duration) (client, server time.Duration) {
	if d == 0 {
		return -1, -1
	}
	return d, 2 * d
}

// peerBound maps --peer-max-conns and --peer-max-accepted, where 0 means
// no bound, to PeerClientConfig.MaxConns and PeerServerConfig.MaxAccepted,
// where 0 means the default.
func peerBound(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
