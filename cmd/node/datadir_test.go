package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
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
