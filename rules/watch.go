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

// Watcher reloads rules from a path whenever what it reads there changes;
// see FileWatcher.
type Watcher = FileWatcher[*Set]

// FileWatcher reloads a configuration of type T from a path whenever what
// it reads there changes: edits in place, atomic renames, and the symlink
// swap with which Kubernetes updates a mounted ConfigMap. It watches the
// directory, not the file, and compares a digest of the content, so events
// that change nothing are ignored. It reads the files as ReadDocs does and
// hands them to its parse function. FileWatcher is safe for concurrent use.
type FileWatcher[T any] struct {
	path    string
	parse   func([]Doc) (T, error)
	onLoad  func(T, error)
	trigger chan struct{}
	fw      *fsnotify.Watcher

	mu   sync.Mutex // guards last
	last [sha256.Size]byte
}

// NewWatcher starts watching path (a file or a directory, as for Load) and
// returns the Watcher; call Load for the rules, then Run. Changes made after
// NewWatcher returns are never missed. After each attempt to load changed
// content, onLoad is called with the new Set, or with the error that
// rejected it; the caller keeps the rules it had. onLoad is called from
// Run's goroutine and may block it.
func NewWatcher(path string, onLoad func(*Set, error)) (*Watcher, error) {
	return NewFileWatcher(path, parse, onLoad)
}

// NewFileWatcher is NewWatcher for any configuration: parse turns the
// files read at path into a T, or rejects them. onLoad is called as for
// NewWatcher.
func NewFileWatcher[T any](path string, parse func([]Doc) (T, error), onLoad func(T, error)) (*FileWatcher[T], error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	dir := path
	if info, err := os.Stat(path); err != nil || !info.IsDir() {
		dir = filepath.Dir(path)
	}
	if err := fw.Add(dir); err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch rules in %s: %w", dir, err)
	}
	return &FileWatcher[T]{path: path, parse: parse, onLoad: onLoad, trigger: make(chan struct{}, 1), fw: fw}, nil
}

// Close stops watching, for a Watcher that is never Run.
func (w *FileWatcher[T]) Close() error { return w.fw.Close() }

// Load reads and parses the files now. It reports changed=false, with a
// zero T, when the content is the same as at the previous Load.
func (w *FileWatcher[T]) Load() (set T, changed bool, err error) {
	docs, err := ReadDocs(w.path)
	if err != nil {
		return set, true, err
	}
	h := sha256.New()
	for _, d := range docs {
		fmt.Fprintf(h, "%s\x00%d\x00", d.Name, len(d.Data))
		h.Write(d.Data)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	w.mu.Lock()
	same := sum == w.last
	w.last = sum // a rejected version is not reported twice either
	w.mu.Unlock()
	if same {
		return set, false, nil
	}
	set, err = w.parse(docs)
	return set, true, err
}

// Reload asks Run to load the rules (on SIGHUP, say), after the same short
// pause as a file event, so a write in progress is read whole. It never
// blocks.
func (w *FileWatcher[T]) Reload() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// Run reloads on changes until ctx ends, then stops watching.
func (w *FileWatcher[T]) Run(ctx context.Context) error {
	defer w.fw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop() // armed only by file events; no stale tick since Go 1.23
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.fw.Events:
			timer.Reset(debounce)
		case err := <-w.fw.Errors:
			var zero T
			w.onLoad(zero, fmt.Errorf("watch %s: %w", w.path, err))
		case <-w.trigger:
			timer.Reset(debounce)
		case <-timer.C:
			w.reload()
		}
	}
}

func (w *FileWatcher[T]) reload() {
	if set, changed, err := w.Load(); changed {
		w.onLoad(set, err)
	}
}
