package dbrouter

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatchConfigFileReturnsAfterClose checks that WatchConfigFile, with a
// context that never ends, returns soon after Router.Close, whether the file
// never changes or cannot be read (reported at every interval until then),
// and that it does not call onError once Close has returned. Close comes
// after the watch has applied the file once, so that it is not a Reload
// refused with ErrClosed that ends the watch.
func TestWatchConfigFileReturnsAfterClose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		remove bool // remove the file once the watch has applied it
	}{
		{name: "file unchanged"},
		{name: "file unreadable", remove: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "dbrouter.yaml")
			yaml := "defaults: {user: app}\nclusters: {c1: {nodes: ['127.0.0.1:1']}}\n" // nothing listens there; Open does no I/O
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			applied := &messageSignal{msg: "dbrouter: configuration reloaded", seen: make(chan struct{})}
			cfg.Logger = slog.New(applied)
			r, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var closed atomic.Bool
			var late atomic.Int64 // onError calls after Close returned
			reported := make(chan error, 1)
			onError := func(err error) {
				if closed.Load() {
					late.Add(1)
				}
				select {
				case reported <- err:
				default:
				}
			}
			returned := make(chan struct{})
			go func() {
				defer close(returned)
				r.WatchConfigFile(context.Background(), path, 5*time.Millisecond, onError)
			}()
			select {
			case <-applied.seen:
			case <-time.After(5 * time.Second):
				t.Fatal("the watch did not apply the file")
			}
			if tc.remove {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				select { // the watch is running and reporting
				case err := <-reported:
					t.Logf("reported before Close, as it should: %v", err)
				case <-time.After(5 * time.Second):
					t.Fatal("an unreadable file was not reported")
				}
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			closed.Store(true)
			select {
			case <-returned:
			case <-time.After(5 * time.Second):
				t.Fatalf("WatchConfigFile still running 5s after Router.Close (onError called %d times after Close)", late.Load())
			}
			if n := late.Load(); n > 0 {
				t.Errorf("onError called %d times after Close", n)
			}
		})
	}
}

// messageSignal is a slog.Handler that closes seen on the first record whose
// message is msg, and drops every record.
type messageSignal struct {
	msg  string
	seen chan struct{}
	once sync.Once
}

func (h *messageSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h *messageSignal) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *messageSignal) WithGroup(string) slog.Handler            { return h }

func (h *messageSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}
