package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicerl/sluice/rules"
)

// localArgs are the flags of a node on loopback with ports chosen by the
// system, storing its rules in dataDir.
func localArgs(dataDir string, more ...string) []string {
	return append([]string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--peer-addr", "127.0.0.1:0", "--data-dir", dataDir}, more...)
}

// damagedDB returns a rules database that held one rule, with every page
// after the two meta pages overwritten: bbolt panics opening it ("invalid
// freelist page"), as in issue 17.
func damagedDB(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	p, err := rules.OpenPersist(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rules.NewCatalog("a").Put([]rules.Spec{{Name: "api", Limit: 1, Period: "1s"}}, p.Save); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join(dir, rules.PersistFile))
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(db[24:])) // in the first meta page
	for i := 2 * pageSize; i < len(db); i++ {
		db[i] = byte(i*13 + 5)
	}
	return db
}

// TestRunRefusesDamagedDataDir starts a node whose rules database is damaged
// or empty: it stops with an error naming the file and what to do, and
// leaves the file as it was.
func TestRunRefusesDamagedDataDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		db   []byte
		want string
	}{
		{"empty", []byte{}, "empty (0 bytes)"},
		{"damaged", damagedDB(t), "invalid freelist page"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, rules.PersistFile)
			write(t, path, string(tc.db))
			err := run(context.Background(), localArgs(dir), func(string) string { return "" }, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("the node started on a damaged rules database")
			}
			for _, want := range []string{path, tc.want, "move the file aside", "--recover-data-dir"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, tc.db) {
				t.Error("the refused start changed the file")
			}
		})
	}
}

// TestRunRecoversDamagedDataDir starts a node on a damaged rules database
// with --recover-data-dir (or its environment variable): the file is moved
// aside, kept, the move is logged at error level with the new path, and the
// node serves with a new database that stores rules across a restart.
func TestRunRecoversDamagedDataDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		db   []byte
		args []string
		env  map[string]string
	}{
		{"empty, flag", []byte{}, []string{"--recover-data-dir"}, nil},
		{"damaged, env", damagedDB(t), nil, map[string]string{"SLUICE_RECOVER_DATA_DIR": "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, rules.PersistFile)
			write(t, path, string(tc.db))
			api, logs, stop := startNode(t, localArgs(dir, tc.args...), tc.env)
			moved, _ := logs.await(t, "rules database damaged: moved it aside; starting with no stored API rules, which come back from peers that have them", 0)
			if moved["level"] != "ERROR" || !strings.HasPrefix(moved["moved_to"].(string), path+".corrupt-") {
				t.Fatalf("log line %v: want level ERROR and moved_to %s.corrupt-<time>", moved, path)
			}
			if kept, err := os.ReadFile(moved["moved_to"].(string)); err != nil || !bytes.Equal(kept, tc.db) {
				t.Fatalf("the file moved aside is not the damaged file: %v", err)
			}
			if code, body := request(t, "PUT", api+"/v1/rules/api", `{"limit": 1, "period": "1h"}`); code != 200 {
				t.Fatalf("PUT a rule after recovering: %d %v", code, body)
			}
			stop()

			// The new database is sound: a restart without the flag keeps the rule.
			api, _, stop = startNode(t, localArgs(dir), nil)
			defer stop()
			if code, body := post(t, api+"/v1/check", `{"rule": "api", "key": "k"}`); code != 200 {
				t.Fatalf("the stored rule after a restart: %d %v", code, body)
			}
		})
	}
}

// startNode runs a node in process until stop is called, and returns its API
// address and its log.
func startNode(t *testing.T, args []string, env map[string]string) (api string, logs *logWatcher, stop func()) {
	t.Helper()
	pr, pw := io.Pipe()
	logs = newLogWatcher()
	go logs.consume(pr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // a run that fails at once closes the log without waiting for stop
	go func() {
		done <- run(ctx, args, func(k string) string { return env[k] }, io.Discard, pw)
		pw.Close()
	}()
	started, _ := logs.await(t, "sluice started", 0)
	return "http://" + started["http_addr"].(string), logs, func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("node: %v", err)
		}
	}
}

// TestDefaultDataDir: without --data-dir each node gets sluice-data/<its
// name>, and a name cannot reach outside sluice-data; an explicit flag
// (even empty) and the environment win.
func TestDefaultDataDir(t *testing.T) {
	for name, want := range map[string]string{
		"node-2": "sluice-data/node-2", "pod.ns_1": "sluice-data/pod.ns_1",
		"../etc": "sluice-data/.._etc", "..": "sluice-data/_..", "a/b c": "sluice-data/a_b_c",
	} {
		o, err := parseOptions([]string{"--node-name", name}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.dataDir != filepath.FromSlash(want) || !o.dataDirDefault {
			t.Errorf("node %q: data dir %q (default %v), want %q", name, o.dataDir, o.dataDirDefault, want)
		}
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--data-dir", "mine"}, nil, "mine"},
		{[]string{"--data-dir", ""}, nil, ""},
		{nil, map[string]string{"SLUICE_DATA_DIR": "/data"}, "/data"},
	} {
		o, err := parseOptions(append(tc.args, "--node-name", "n"), func(k string) string { return tc.env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.dataDir != tc.want || o.dataDirDefault {
			t.Errorf("%v %v: data dir %q (default %v), want %q", tc.args, tc.env, o.dataDir, o.dataDirDefault, tc.want)
		}
	}
}

// TestDefaultDataDirKeepsLegacy: a node started without --data-dir where
// an earlier release left sluice-data/rules.db, and with no directory of
// its own, keeps using the old database (and logs it), unless another
// node holds it: then it opens its own. Once it has its own, it uses it.
func TestDefaultDataDirKeepsLegacy(t *testing.T) {
	t.Chdir(t.TempDir())
	legacy, err := rules.OpenPersist(legacyDataDir)
	if err != nil {
		t.Fatal(err)
	}
	open := func(o options) (*rules.Persist, error) { return rules.OpenPersist(o.dataDir) }
	logs := &strings.Builder{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	o := options{nodeName: "a", dataDir: nodeDataDir("a"), dataDirDefault: true}

	// Held by another node (legacy is open): this one opens its own.
	p, dir, err := openDefaultPersist(o, open, log)
	if err != nil || dir != nodeDataDir("a") {
		t.Fatalf("legacy held elsewhere: opened %q, %v; want %q", dir, err, nodeDataDir("a"))
	}
	p.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	legacy.Close()

	// Free, and no directory of its own: the node keeps the old one.
	p, dir, err = openDefaultPersist(o, open, log)
	if err != nil || dir != legacyDataDir {
		t.Fatalf("legacy free: opened %q, %v; want %q", dir, err, legacyDataDir)
	}
	p.Close()
	if !strings.Contains(logs.String(), "using the rules database of an earlier release") {
		t.Errorf("the use of the old database is not logged: %s", logs)
	}

	// With a directory of its own, the node uses it.
	if err := os.MkdirAll(nodeDataDir("b"), 0o700); err != nil {
		t.Fatal(err)
	}
	p, dir, err = openDefaultPersist(options{nodeName: "b", dataDir: nodeDataDir("b"), dataDirDefault: true}, open, log)
	if err != nil || dir != nodeDataDir("b") {
		t.Fatalf("own directory present: opened %q, %v", dir, err)
	}
	p.Close()
}
