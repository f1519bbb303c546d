package transport

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// UnixPrefix marks an address as a Unix domain socket's path:
// "unix:/run/sluice/api.sock".
const UnixPrefix = "unix:"

// ErrSocketInUse is Listen finding another process serving on the socket
// path it was given.
var ErrSocketInUse = errors.New("socket in use")

// Listen listens on addr: "host:port" for TCP, or "unix:" and a path for a
// Unix domain socket. A socket file is given mode (if zero, what the umask
// leaves), and is removed when the listener is closed. A file left at the
// path by a process that died is removed first, safely: Listen connects to
// it, and if anything answers, it returns ErrSocketInUse and leaves the
// file alone; a path that is not a socket is never removed.
func Listen(addr string, mode fs.FileMode) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, UnixPrefix)
	if !ok {
		return net.Listen("tcp", addr)
	}
	if path == "" {
		return nil, errors.New("unix: needs a path, as in unix:/run/sluice/api.sock")
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if mode != 0 {
		// Between Listen and Chmod the socket has the umask's mode; put it
		// in a directory only the application and sluice can reach.
		if err := os.Chmod(path, mode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket mode: %w", err)
		}
	}
	return ln, nil
}

// staleDialTimeout bounds the probe of an existing socket file: a live
// server accepts at once (the kernel completes the connection for it).
const staleDialTimeout = time.Second

// removeStale removes a socket file nothing serves on. It refuses a path
// that is not a socket, and one something answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("%s exists and is not a socket: not removing it", path)
	}
	conn, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%s: %w: another process serves on it (is another sluice running with this path?)", path, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: probing the existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: removing the stale socket: %w", path, err)
	}
	return nil
}
