package transport_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicerl/sluice/transport"
)

// unixClient is an HTTP client that reaches every URL through the socket
// at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

// serveOn serves a handler answering "ok" on ln until the test ends.
func serveOn(t *testing.T, ln net.Listener) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func get(t *testing.T, path string) string {
	t.Helper()
	resp, err := unixClient(path).Get("http://sluice/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestListenUnixMode: the socket gets the mode asked for, whatever the
// umask, serves, and is removed when the listener closes.
func TestListenUnixMode(t *testing.T) {
	for _, mode := range []fs.FileMode{0o600, 0o660, 0o666} {
		path := filepath.Join(t.TempDir(), "api.sock")
		ln, err := transport.Listen(transport.UnixPrefix+path, mode)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != mode {
			t.Fatalf("socket mode %v, want a socket with %v", fi.Mode(), mode)
		}
		serveOn(t, ln)
		if got := get(t, path); got != "ok" {
			t.Fatalf("served %q", got)
		}
		ln.Close()
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("socket file left after close: %v", err)
		}
	}
}

// TestListenRemovesStaleSocket: a socket file left by a process that died
// (nobody accepts on it) is replaced.
func TestListenRemovesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false) // as after a crash: the file stays
	dead.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("no stale file to test with: %v", err)
	}
	ln, err := transport.Listen(transport.UnixPrefix+path, 0o600)
	if err != nil {
		t.Fatalf("a stale socket must be replaced: %v", err)
	}
	defer ln.Close()
	serveOn(t, ln)
	if got := get(t, path); got != "ok" {
		t.Fatalf("served %q", got)
	}
}

// TestListenRefusesLiveSocket: a socket something serves on is never
// removed: a second listener is refused, and the first keeps serving.
func TestListenRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := transport.Listen(transport.UnixPrefix+path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serveOn(t, ln)
	if _, err := transport.Listen(transport.UnixPrefix+path, 0o600); !errors.Is(err, transport.ErrSocketInUse) {
		t.Fatalf("second listener on a live socket: %v, want ErrSocketInUse", err)
	}
	if got := get(t, path); got != "ok" {
		t.Fatalf("the first listener no longer serves: %q", got)
	}
}

// TestListenRefusesNonSocket: a path holding a regular file is left alone.
func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := transport.Listen(transport.UnixPrefix+path, 0o600); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen over a regular file: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Fatalf("the file was touched: %q %v", b, err)
	}
	if _, err := transport.Listen(transport.UnixPrefix, 0); err == nil {
		t.Fatal("unix: without a path accepted")
	}
}

// TestListenLock: the lock beside the socket refuses a second listener even
// when the first one's socket file is gone (as if a racing start had
// removed it), so a second node never takes the path over.
func TestListenLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := transport.Listen(transport.UnixPrefix+path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := transport.Listen(transport.UnixPrefix+path, 0o600); !errors.Is(err, transport.ErrSocketInUse) {
		t.Fatalf("second listener while the first holds the lock: %v, want ErrSocketInUse", err)
	}
	ln.Close()
	again, err := transport.Listen(transport.UnixPrefix+path, 0o600)
	if err != nil {
		t.Fatalf("after the first listener closed: %v", err)
	}
	again.Close()
}
