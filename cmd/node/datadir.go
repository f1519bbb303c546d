package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// legacyDataDir is the default --data-dir of earlier releases, shared by
// every node started in one directory.
const legacyDataDir = "sluice-data"

// nodeDataDir is the default --data-dir of the node named name:
// sluice-data/<name>, so that several nodes started in one directory (the
// README's cluster, a test) each get their own, as etcd derives
// <name>.etcd. Characters other than letters, digits and ._- become _, so
// that a name never reaches outside sluice-data.
func nodeDataDir(name string) string {
	safe := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, name)
	if strings.Trim(safe, ".") == "" { // "", ".", ".."
		safe = "_" + safe
	}
	return filepath.Join(legacyDataDir, safe)
}

// openDefaultPersist opens the rules database of a node whose --data-dir
// was not given. An earlier release kept it in sluice-data itself: if
// sluice-data/rules.db exists and the node's own directory does not, the
// node keeps using the old one, and says so, unless another node holds it
// (then that node has it, and this one starts its own directory, taking
// the rules from its peers). Otherwise it opens the node's own directory
// (OpenPersist creates it). It returns the directory it opened.
func openDefaultPersist(o options, open func(options) (*rules.Persist, error), log *slog.Logger) (*rules.Persist, string, error) {
	_, ownErr := os.Stat(o.dataDir)
	_, legacyErr := os.Stat(filepath.Join(legacyDataDir, rules.PersistFile))
	if errors.Is(ownErr, os.ErrNotExist) && legacyErr == nil {
		legacy := o
		legacy.dataDir = legacyDataDir
		p, err := open(legacy)
		switch {
		case err == nil:
			log.Warn("using the rules database of an earlier release in sluice-data; the default is now one directory per node: move sluice-data/rules.db to the node's own directory, or pass --data-dir sluice-data, to silence this",
				"data_dir", legacyDataDir, "own_data_dir", o.dataDir)
			return p, legacyDataDir, nil
		case !errors.Is(err, rules.ErrLocked):
			return nil, "", err
		}
		log.Info("sluice-data holds the rules database of an earlier release, used by another node; this node uses its own directory", "data_dir", o.dataDir)
	}
	p, err := open(o)
	return p, o.dataDir, err
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
