package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/envoy"
	"github.com/sluicerl/sluice/rules"
)

// ruleSources puts in force the rules of the node's two files: its own
// rules (--rules) and Envoy's rate limit configuration (--envoy-config),
// whose limits become rules too. Each reloads on its own; a change is put
// in force only if the two still combine (no rule name given twice), so a
// bad change never replaces a good one. It is safe for concurrent use.
type ruleSources struct {
	node *cluster.Node
	svc  *envoy.Service

	mu    sync.Mutex // guards file and envoy
	file  *rules.Set
	envoy *envoy.Config
}

// setFile puts the rules file's rules in force beside Envoy's.
func (r *ruleSources) setFile(s *rules.Set) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.applyLocked(s, r.envoy); err != nil {
		return err
	}
	r.file = s
	return nil
}

// setEnvoy puts Envoy's configuration in force beside the rules file's.
func (r *ruleSources) setEnvoy(c *envoy.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.applyLocked(r.file, c); err != nil {
		return err
	}
	r.envoy = c
	return nil
}

// applyLocked gives the node the rules of both sources, then the service
// the configuration, so a call that matches a new limit finds its rule.
// mu is held.
func (r *ruleSources) applyLocked(file *rules.Set, c *envoy.Config) error {
	if file == nil {
		file = &rules.Set{}
	}
	if c == nil {
		c = &envoy.Config{}
	}
	set, err := file.With(c.Rules())
	if err != nil {
		return fmt.Errorf("the rules file and the Envoy configuration: %w", err)
	}
	r.node.SetRules(set)
	r.svc.SetConfig(c)
	return nil
}

// watchEnvoy loads the Envoy configuration at path into src and returns
// the watcher that reloads it on change; reloads counts the attempts.
func watchEnvoy(path string, src *ruleSources, log *slog.Logger, reloads func(result string)) (*rules.FileWatcher[*envoy.Config], error) {
	w, err := rules.NewFileWatcher(path, envoy.Parse, func(c *envoy.Config, err error) {
		if err == nil {
			err = src.setEnvoy(c)
		}
		if err != nil {
			reloads("error")
			log.Error("Envoy configuration rejected; the configuration in force stays", "path", path, "err", err)
			return
		}
		reloads("ok")
		log.Info("Envoy configuration loaded", "path", path, "domains", len(c.Domains()), "limits", len(c.Rules()))
	})
	if err != nil {
		return nil, err
	}
	c, _, err := w.Load()
	if err == nil {
		err = src.setEnvoy(c)
	}
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("load --envoy-config: %w", err)
	}
	log.Info("Envoy configuration loaded", "path", path, "domains", len(c.Domains()), "limits", len(c.Rules()))
	return w, nil
}

// stopGRPC stops srv gracefully, letting calls in flight finish, and cuts
// them off when ctx ends.
func stopGRPC(ctx context.Context, srv *grpc.Server) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		srv.Stop()
		<-done
	}
}
