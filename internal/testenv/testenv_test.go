package testenv

import (
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBuffer(t *testing.T) {
	var b Buffer
	if b.Lines() != nil || b.String() != "" {
		t.Fatalf("empty Buffer: %q, %q", b.Lines(), b.String())
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { b.Logf("line %d", i) })
	}
	wg.Wait()
	b.Logf("ends with a newline\n")
	fmt.Fprint(&b, "written\n")
	lines := b.Lines()
	if len(lines) != 12 || lines[10] != "ends with a newline" || lines[11] != "written" {
		t.Errorf("Lines() = %q", lines)
	}
	for i := range 10 {
		if !slices.Contains(lines, fmt.Sprintf("line %d", i)) {
			t.Errorf("line %d missing from %q", i, lines)
		}
	}
}

// TestBufferAsOutput collects a child's stdout and stderr at once.
func TestBufferAsOutput(t *testing.T) {
	sh := Need(t, "sh", "dash")
	var b Buffer
	cmd := exec.Command(sh, "-c", "echo out; echo err >&2")
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if got := b.Lines(); len(got) != 2 || !slices.Contains(got, "out") || !slices.Contains(got, "err") {
		t.Errorf("Lines() = %q, want out and err", got)
	}
}

func TestWaitFor(t *testing.T) {
	checks := 0
	WaitFor(t, time.Minute, "the fifth check", func() bool { checks++; return checks == 5 })
	if checks != 5 {
		t.Errorf("%d checks, want 5", checks)
	}
}

// ended is a testing.TB that records how a helper ended the test.
type ended struct {
	testing.TB
	failed, skipped string
}

func (e *ended) Helper() {}
func (e *ended) Fatalf(format string, args ...any) {
	e.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (e *ended) Skip(args ...any) {
	e.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}

// end runs f with an ended in a goroutine of its own, since the helpers
// end it with runtime.Goexit as the testing package does.
func end(t *testing.T, f func(tb testing.TB)) *ended {
	e := &ended{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(e)
	}()
	<-done
	return e
}

func TestMissing(t *testing.T) {
	tests := []struct {
		ci                 string
		wantFail, wantSkip bool
	}{
		{ci: "", wantSkip: true},
		{ci: "false", wantSkip: true},
		{ci: "true", wantFail: true},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			e := end(t, func(tb testing.TB) { Need(tb, "corral-no-such-tool", "corral-no-such-package") })
			if (e.failed != "") != tt.wantFail || (e.skipped != "") != tt.wantSkip {
				t.Fatalf("failed %q, skipped %q; want failed %t, skipped %t", e.failed, e.skipped, tt.wantFail, tt.wantSkip)
			}
			if msg := e.failed + e.skipped; !strings.Contains(msg, "corral-no-such-tool not installed (Debian package corral-no-such-package)") {
				t.Errorf("message %q does not name the tool and its package", msg)
			}
		})
	}
}

func TestWaitForTimesOut(t *testing.T) {
	checks := 0
	e := end(t, func(tb testing.TB) {
		WaitFor(tb, 20*time.Millisecond, "what never comes", func() bool { checks++; return false })
	})
	if e.failed != "waited 20ms for what never comes" || checks < 2 {
		t.Errorf("failed %q after %d checks", e.failed, checks)
	}
}
