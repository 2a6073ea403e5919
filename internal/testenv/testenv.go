// Package testenv holds what corral's tests need from the machine and from
// one another: tools and privileges that may be missing (Need, NeedRoot,
// Missing: skipped on a developer's machine, failed in CI), free loopback
// ports (TCP and UDP), files, a one-request HTTP client, waiting for state that sends no
// event (WaitFor), gates that hold a worker until the test lets it go
// (Gate, OpenGate), and a Buffer that collects a child's output or a
// logger's lines.
package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// CI reports whether the tests run in CI, where a missing tool is a
// failure: .ci/run installs everything the tests need.
func CI() bool { return os.Getenv("CI") == "true" }

// Missing ends the test because something it needs is missing, which the
// message says: skipped on a developer's machine, failed in CI, where
// .ci/run provides everything the tests need.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI=true: .ci/run must provide it)", msg)
	}
	t.Skip(msg)
}

// Need returns the path of tool, or ends the test with Missing. pkg names
// the Debian package that has it.
func Need(t testing.TB, tool, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		Missing(t, "%s not installed (Debian package %s)", tool, pkg)
	}
	return path
}

// NeedRoot ends the test with Missing unless it runs as root; why says what
// needs root.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "%s needs root", why)
	}
}

// WaitFor checks cond until it reports true, and fails the test if timeout
// passes first, naming what it waited for. It is for state that sends no
// event (a unit's state, a port that starts to answer): wait on an event
// where there is one. The checks are 1 ms apart at first, doubling to at
// most 100 ms, so a quick state is seen at once and a slow one costs few
// checks.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for pause := time.Millisecond; !cond(); pause = min(2*pause, 100*time.Millisecond) {
		next := time.NewTimer(pause)
		select {
		case <-next.C:
		case <-deadline.C:
			next.Stop()
			t.Fatalf("waited %v for %s", timeout, what)
		}
	}
}

// Buffer collects what a test's children write and what its loggers log.
// It is safe for concurrent use; the zero value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p, for a command's Stdout or Stderr.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// Logf appends one line, for a logf option: the message and a newline,
// unless it ends with one.
func (b *Buffer) Logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	b.Write([]byte(line))
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns the lines written so far, without their newlines; nil when
// nothing was.
func (b *Buffer) Lines() []string {
	s := b.String()
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// FreeAddr returns a loopback address whose port was free just now.
// Another process could take it before the caller binds it; on loopback,
// in a test, that is unlikely.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreeUDPAddr is FreeAddr for a UDP port.
func FreeUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// WriteFile writes text to path, mode 0644, creating its directory.
func WriteFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Get fetches http://addr/ on a new connection and returns the body,
// failing the test on an error or a status other than 200.
func Get(t testing.TB, addr string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET http://%s/: %v", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET http://%s/: %s, %v: %s", addr, resp.Status, err, body)
	}
	return string(body)
}

// AskUDP sends msg in one datagram to addr and returns the answer, giving
// up after 30 s (time enough for it to start a socket-activated service).
func AskUDP(addr, msg string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// Gate makes a FIFO at path that a worker opens and reads, blocking there
// until the test calls OpenGate: a worker held at a point of the test's
// choosing without a sleep on either side.
func Gate(t testing.TB, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

// OpenGate lets the worker waiting on the gate at path go on; one write
// reaches one reader.
func OpenGate(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("go"), 0o600); err != nil {
		t.Fatal(err)
	}
}
