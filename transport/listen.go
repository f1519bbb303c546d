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
//
// While the listener is open it holds an exclusive lock on path + ".lock"
// (created if need be, and left in place: the lock goes with the process),
// so that two processes starting at once beside one stale file cannot both
// remove it, the second taking the first's new socket away.
func Listen(addr string, mode fs.FileMode) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, UnixPrefix)
	if !ok {
		return net.Listen("tcp", addr)
	}
	if path == "" {
		return nil, errors.New("unix: needs a path, as in unix:/run/sluice/api.sock")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("unix:%s: the path is too long for a socket: at most %d bytes, got %d", path, maxSocketPath, len(path))
	}
	lock, err := lockSocket(path)
	if err != nil {
		return nil, err
	}
	ln, err := listenUnix(path, mode)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &unixListener{Listener: ln, lock: lock}, nil
}

func listenUnix(path string, mode fs.FileMode) (net.Listener, error) {
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

// maxSocketPath is the longest path a Unix socket may have on Linux
// (sun_path holds 108 bytes with its terminating NUL).
const maxSocketPath = 107

// lockSocket takes the lock of the socket at path, or reports
// ErrSocketInUse if another listener holds it.
func lockSocket(path string) (*os.File, error) {
	// O_NOFOLLOW: a symlink put at the lock's path does not make sluice
	// create or open a file elsewhere.
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock for %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w: another process holds %s.lock (is another sluice running with this path?)", path, ErrSocketInUse, path)
		}
		return nil, fmt.Errorf("lock for %s: %w", path, err)
	}
	return f, nil
}

// unixListener is a Unix socket's listener with its lock, released when
// the listener closes (after the socket file is removed).
type unixListener struct {
	net.Listener
	lock *os.File
}

func (l *unixListener) Close() error {
	err := l.Listener.Close()
	l.lock.Close()
	return err
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
