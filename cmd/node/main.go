// Command sluice runs one sluice node: the local rate-limit API for the
// application beside it, and the admin endpoints for health and metrics.
//
// Every flag has an environment equivalent: --http-addr is SLUICE_HTTP_ADDR.
// A flag given on the command line wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/envoy"
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

// run runs a node until ctx ends, then shuts it down in reverse start
// order within --shutdown-timeout: not ready, leave the cluster, drain the
// API and admin servers, stop peer RPC.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ctl" {
		return runCtl(ctx, args[1:], getenv, stdout, stderr)
	}
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	build := readBuildInfo()
	if o.showVersion {
		fmt.Fprintln(stdout, build)
		return nil
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}

	tracer, stopTracing, err := newTracerProvider(ctx, getenv, build.Version, log)
	if err != nil {
		return err
	}
	flushTraces := func() {
		ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
		defer cancel()
		if err := stopTracing(ctx); err != nil {
			log.Warn("spans not flushed to the collector", "err", err)
		}
	}
	defer flushTraces() // if run returns early; the last step of a shutdown otherwise
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build.register(reg)
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
	open := func(o options) (*rules.Persist, error) { return openPersist(o, time.Now(), log) }
	switch {
	case o.dataDirDefault:
		if persist, o.dataDir, err = openDefaultPersist(o, open, log); err != nil {
			return err
		}
		defer persist.Close()
	case o.dataDir != "":
		if persist, err = open(o); err != nil {
			return err
		}
		defer persist.Close()
	default:
		log.Warn("no --data-dir: this node refuses rule changes through its API; changes made on peers are kept in memory only")
	}
	// Peer RPC: the client reaches the owners of this node's keys, the
	// server answers peers as owner; both prove membership with the
	// gossip keys, read from the node once it exists.
	var node *cluster.Node
	peerKeys := func() [][]byte { return node.PeerKeys() }
	clientIdle, serverIdle := peerIdle(o.peerIdle)
	peers := transport.NewPeerClient(transport.PeerClientConfig{Keys: peerKeys, IdleTimeout: clientIdle, MaxConns: peerBound(o.peerMaxConns), Logger: log, Registerer: reg})
	defer peers.Close()
	node, err = cluster.New(cluster.Config{
		Store:           bucket.StoreConfig{MaxKeys: o.maxKeys},
		Metrics:         reg,
		Logger:          log,
		Gossip:          gcfg,
		Peers:           peers,
		GossipSync:      cluster.GossipSyncConfig{Interval: o.gossipSyncInterval, MaxMembers: o.gossipMaxMembers, GossipModeMaxMembers: o.gossipModeMax},
		Leases:          cluster.LeaseConfig{Threshold: leaseThreshold(o.leaseThreshold), Term: o.leaseTerm},
		LeaveTimeout:    o.shutdownTimeout,
		PartitionWindow: partitionWindow(o.partitionWindow),
		Shadow:          o.shadow,
		Persist:         persist,
		Tracer:          tracer,
		TraceKeys:       o.traceKeys,
	})
	if err != nil {
		return err
	}
	defer node.Close() // if run returns before the node ran; after Run, nothing to do
	peerServer := transport.NewPeerServer(transport.PeerServerConfig{Handler: node, Keys: peerKeys, IdleTimeout: serverIdle, MaxAccepted: peerBound(o.peerMaxAccept), Logger: log, Registerer: reg})

	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_rules_reloads_total",
		Help: "Attempts to load changed rules, by result (ok or error); on error the rules in force stay.",
	}, []string{"result"})
	reloads.WithLabelValues("ok") // both at zero from start
	reloads.WithLabelValues("error")
	reg.MustRegister(reloads)
	var draining atomic.Bool
	var asked lastAsked
	svc := envoy.NewService(envoy.ServiceConfig{Limiter: node, Ready: node.Ready, ResponseHeaders: o.grpcHeaders, Shadow: o.shadow, Logger: log})
	src := &ruleSources{node: node, svc: svc}
	var watcher *rules.Watcher
	if o.rulesPath == "" {
		if err := src.setFile(&rules.Set{}); err != nil {
			return err
		}
	} else {
		watcher, err = rules.NewWatcher(o.rulesPath, func(s *rules.Set, err error) {
			if err == nil {
				err = src.setFile(s)
			}
			if err != nil {
				reloads.WithLabelValues("error").Inc()
				log.Error("rules rejected; the rules in force stay", "path", o.rulesPath, "err", err)
				return
			}
			reloads.WithLabelValues("ok").Inc()
			log.Info("rules loaded", "path", o.rulesPath, "rules", s.Len())
		})
		if err != nil {
			return err
		}
		defer watcher.Close() // Run closes it too; this covers an early return
		s, _, err := watcher.Load()
		if err == nil {
			err = src.setFile(s)
		}
		if err != nil {
			return fmt.Errorf("load rules: %w", err)
		}
		log.Info("rules loaded", "path", o.rulesPath, "rules", s.Len())
	}
	var envoyWatcher *rules.FileWatcher[*envoy.Config]
	if o.envoyConfig != "" {
		envoyWatcher, err = watchEnvoy(o.envoyConfig, src, log, func(r string) { reloads.WithLabelValues(r).Inc() })
		if err != nil {
			return err
		}
		defer envoyWatcher.Close()
	}

	// Listen first, so a bad address fails at once and port 0 can be used.
	// A Unix socket's file is removed when its listener closes.
	apiLn, err := transport.Listen(o.httpAddr, o.socketMode)
	if err != nil {
		return fmt.Errorf("listen on --http-addr: %w", err)
	}
	defer apiLn.Close()
	adminLn, err := transport.Listen(o.adminAddr, o.socketMode)
	if err != nil {
		return fmt.Errorf("listen on --admin-addr: %w", err)
	}
	defer adminLn.Close()
	if a, ok := adminLn.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() && o.adminToken == "" {
		log.Info("the admin port is reachable from the network: its key endpoints (inspect, reset, top denied keys) answer loopback clients only; give --admin-token to use them from elsewhere",
			"admin_addr", adminLn.Addr().String())
	}
	var grpcLn net.Listener
	if o.grpcAddr != "" {
		if grpcLn, err = transport.Listen(o.grpcAddr, o.socketMode); err != nil {
			return fmt.Errorf("listen on --grpc-addr: %w", err)
		}
		defer grpcLn.Close()
	}
	ready := func() bool { return !draining.Load() && node.Ready() }

	api := transport.NewHTTPServer(asked.track(transport.NewServer(transport.ServerConfig{
		Limiter:    node,
		DenyStatus: o.denyStatus,
		MaxWait:    o.maxWait,
		Logger:     log,
		Registerer: reg,
		Membership: node,
		Rules:      node,
		Tracer:     tracer,
	})), log)
	admin := transport.NewHTTPServer(transport.NewAdmin(transport.AdminConfig{
		Ready:    ready,
		Gatherer: reg,
		Keyring:  node,
		Status:   node,
		Version:  build.Version,
		Keys:     node,
		Token:    o.adminToken,
	}), log)

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return serve(api, apiLn) })
	g.Go(func() error { return serve(admin, adminLn) })
	var grpcSrv *grpc.Server
	if grpcLn != nil {
		// Health says NOT_SERVING while draining; the service keeps
		// answering Envoy until it stops asking, as the API does.
		grpcSrv = envoy.NewServer(envoy.ServerConfig{Service: svc, Ready: ready, Registerer: reg, Asked: asked.mark, Tracer: tracer})
		g.Go(func() error { return grpcSrv.Serve(grpcLn) })
	}
	peerCtx, stopPeers := context.WithCancel(runCtx) // outlives gctx: peers are told when this node leaves
	defer stopPeers()
	g.Go(func() error { return peerServer.Serve(peerCtx, peerLn) })
	nodeCtx, stopNode := context.WithCancel(gctx)
	defer stopNode()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nodeCtx) }()
	if watcher != nil || envoyWatcher != nil {
		if watcher != nil {
			g.Go(func() error { return watcher.Run(gctx) })
		}
		if envoyWatcher != nil {
			g.Go(func() error { return envoyWatcher.Run(gctx) })
		}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-hup:
					if watcher != nil {
						watcher.Reload()
					}
					if envoyWatcher != nil {
						envoyWatcher.Reload()
					}
				}
			}
		})
	}
	grpcAddr := ""
	if grpcLn != nil {
		grpcAddr = grpcLn.Addr().String()
	}
	log.Info("sluice started", "http_addr", apiLn.Addr().String(), "admin_addr", adminLn.Addr().String(),
		"grpc_addr", grpcAddr, "node", node.Name(), "gossip_addr", node.GossipAddr(), "data_dir", o.dataDir, "version", build.Version)

	var errs []error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-gctx.Done():
		// a server failed; shut the rest down and report it
	case err := <-nodeDone:
		nodeDone <- err // the node stopped on its own; report it below
	}
	// Shut down in reverse start order, within one budget
	// (--shutdown-timeout): not ready; leave the cluster (hand the buckets
	// this node owns to their next owners, all at once; answer peers no
	// more; tell the cluster); keep answering the application, which may
	// be stopping too, until it has not asked for drainQuiet (a node that
	// has left asks the new owners, or decides from its fair share); drain
	// the API; stop peer RPC.
	draining.Store(true)
	shutCtx, cancelShut := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancelShut()
	node.Leave(shutCtx)
	stopNode()
	if err := <-nodeDone; err != nil {
		errs = append(errs, fmt.Errorf("node: %w", err))
	}
	log.Info("left the cluster; answering the application until it stops asking")
	// Half of what is left of the budget for the application to stop
	// asking, the rest to finish what is in flight.
	quietBy := time.Now()
	if d, ok := shutCtx.Deadline(); ok {
		quietBy = quietBy.Add(time.Until(d) / 2)
	}
	quietCtx, cancelQuiet := context.WithDeadline(shutCtx, quietBy)
	asked.awaitQuiet(quietCtx, drainQuiet)
	cancelQuiet()
	if grpcSrv != nil {
		stopGRPC(shutCtx, grpcSrv)
	}
	for _, srv := range []*http.Server{api, admin} {
		if err := srv.Shutdown(shutCtx); err != nil {
			// Requests still in flight (long waits): cut them off; their
			// reserved tokens are given back as their contexts end.
			errs = append(errs, fmt.Errorf("drain: %w", err), srv.Close())
		}
	}
	stopPeers()
	cancel()
	errs = append(errs, g.Wait())
	flushTraces()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// drainQuiet is how long the application must not have asked before a
// node that has left closes its API, within half of what is left of the
// shutdown budget (the other half finishes what is in flight).
const drainQuiet = time.Second

// lastAsked is when the API was last asked, in Unix ns.
type lastAsked struct{ ns atomic.Int64 }

// track returns h, recording each request's arrival.
func (a *lastAsked) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mark()
		h.ServeHTTP(w, r)
	})
}

// mark records that the application asked now.
func (a *lastAsked) mark() { a.ns.Store(time.Now().UnixNano()) }

// awaitQuiet returns once nothing has been asked for quiet, or ctx ends.
func (a *lastAsked) awaitQuiet(ctx context.Context, quiet time.Duration) {
	for {
		left := quiet - time.Since(time.Unix(0, a.ns.Load()))
		if left <= 0 {
			return
		}
		t := time.NewTimer(left)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
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
