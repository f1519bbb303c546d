package transport_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicerl/sluice/transport"
)

// TestListenLockFileDoesNotFollowSymlink: a symlink planted at
// api.sock.lock by anyone who can write the directory is refused, as one
// at the socket's path is: sluice never creates or opens the file it names.
func TestListenLockFileDoesNotFollowSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api.sock")
	victim := filepath.Join(dir, "elsewhere", "created-by-sluice")
	if err := os.Mkdir(filepath.Dir(victim), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path+".lock"); err != nil {
		t.Fatal(err)
	}
	ln, err := transport.Listen(transport.UnixPrefix+path, 0o600)
	if err == nil {
		ln.Close()
	}
	if _, statErr := os.Lstat(victim); !errors.Is(statErr, fs.ErrNotExist) {
		t.Fatalf("Listen (err %v) followed the symlink at %s.lock and created %s", err, path, victim)
	}
}

// TestListenPathTooLongSaysSo: a socket path longer than sun_path allows
// (107 bytes on Linux; a path in a deep volume mount reaches it) is refused
// with an error that says so, not bind's "invalid argument".
func TestListenPathTooLongSaysSo(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, strings.Repeat("a", 120)+".sock")
	ln, err := transport.Listen(transport.UnixPrefix+path, 0o600)
	if err == nil {
		ln.Close()
		t.Fatal("a path longer than sun_path was accepted")
	}
	if !strings.Contains(err.Error(), "too long") {
		t.Errorf("error %q does not say the path is too long", err)
	}
}
