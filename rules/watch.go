package rules

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long the watcher waits after the last file event before it
// reloads, so an editor's or Kubernetes' multi-step replace is read once.
const debounce = 100 * time.Millisecond

// Watcher reloads rules from a path whenever what it reads there changes:
// edits in place, atomic renames, and the symlink swap with which Kubernetes
// updates a mounted ConfigMap. It watches the directory, not the file, and
// compares a digest of the content, so events that change nothing are
// ignored. Watcher is safe for concurrent use.
type Watcher struct {
	path    string
	onLoad  func(*Set, error)
	trigger chan struct{}

	mu   sync.Mutex // guards last
	last [sha256.Size]byte
}

// NewWatcher returns a Watcher for path (a file or a directory, as for Load).
// After each attempt to load changed content, onLoad is called with the new
// Set, or with the error that rejected it; the caller keeps the rules it had.
// onLoad is called from Run's goroutine and may block it.
func NewWatcher(path string, onLoad func(*Set, error)) *Watcher {
	return &Watcher{path: path, onLoad: onLoad, trigger: make(chan struct{}, 1)}
}

// Load reads and parses the rules now. It reports changed=false, with a nil
// Set, when the content is the same as at the previous Load.
func (w *Watcher) Load() (set *Set, changed bool, err error) {
	docs, err := read(w.path)
	if err != nil {
		return nil, true, err
	}
	h := sha256.New()
	for _, d := range docs {
		fmt.Fprintf(h, "%s\x00%d\x00", d.name, len(d.data))
		h.Write(d.data)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	w.mu.Lock()
	same := sum == w.last
	w.last = sum // a rejected version is not reported twice either
	w.mu.Unlock()
	if same {
		return nil, false, nil
	}
	set, err = parse(docs)
	return set, true, err
}

// Reload asks Run to load the rules now (on SIGHUP, say). It never blocks.
func (w *Watcher) Reload() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// Run watches the path until ctx ends. It returns an error only if the
// watch cannot be set up.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch rules: %w", err)
	}
	defer fw.Close()
	dir := w.path
	if info, err := os.Stat(w.path); err != nil || !info.IsDir() {
		dir = filepath.Dir(w.path)
	}
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch rules in %s: %w", dir, err)
	}
	w.reload() // catch a change made before the watch was in place
	timer := time.NewTimer(time.Hour)
	timer.Stop() // armed only by file events; no stale tick since Go 1.23
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-fw.Events:
			timer.Reset(debounce)
		case err := <-fw.Errors:
			w.onLoad(nil, fmt.Errorf("watch rules: %w", err))
		case <-w.trigger:
			w.reload()
		case <-timer.C:
			w.reload()
		}
	}
}

func (w *Watcher) reload() {
	if set, changed, err := w.Load(); changed {
		w.onLoad(set, err)
	}
}
