package dbrouter

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// contextCheckingHandler is a slog.Handler that fails the test when it is
// given a nil context, and keeps the messages it handles.
type contextCheckingHandler struct {
	t    *testing.T
	mu   sync.Mutex
	msgs []string
}

func (h *contextCheckingHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	if ctx == nil {
		h.t.Error("slog.Handler.Enabled called with a nil context")
	}
	return true
}

func (h *contextCheckingHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		h.t.Error("slog.Handler.Handle called with a nil context")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *contextCheckingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *contextCheckingHandler) WithGroup(string) slog.Handler      { return h }

// TestEventLogContextNotNil checks that the event dispatcher logs each event
// with a non-nil context. (log/slog's Logger replaces a nil context with
// context.Background before calling the handler, so this holds even when
// the dispatcher passes nil; TestNoNilContextToLogger catches that.)
func TestEventLogContextNotNil(t *testing.T) {
	t.Parallel()
	h := &contextCheckingHandler{t: t}
	d := newDispatcher(slog.New(h), nil)
	d.send(Event{Cluster: "c", Node: "n", Kind: EventState, From: StateUp.String(), To: StateDown.String(), Cause: "test"})
	d.send(Event{Cluster: "c", Node: "n", Kind: EventWriter, From: "n", To: ""})
	d.close() // delivers both
	h.mu.Lock()
	defer h.mu.Unlock()
	if want := []string{"dbrouter: state changed", "dbrouter: writer changed"}; strings.Join(h.msgs, "|") != strings.Join(want, "|") {
		t.Errorf("logged %q, want %q", h.msgs, want)
	}
}

// TestNoNilContextToLogger checks the package's source for a nil context
// passed to a logger (slog.Logger's Log, LogAttrs, Enabled and
// DebugContext to ErrorContext): give it context.Background() or the
// caller's context.
func TestNoNilContextToLogger(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			switch sel.Sel.Name {
			case "Log", "LogAttrs", "Enabled", "DebugContext", "InfoContext", "WarnContext", "ErrorContext":
			default:
				return true
			}
			if id, ok := call.Args[0].(*ast.Ident); ok && id.Name == "nil" {
				t.Errorf("%s: %s called with a nil context", fset.Position(call.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}
