// Package testenv holds what corral's end-to-end tests need from the
// machine: tools that may be missing, free loopback ports, files.
package testenv

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// CI reports whether the tests run in CI, where a missing tool is a
// failure: .ci/run installs everything the tests need.
func CI() bool { return os.Getenv("CI") == "true" }

// Need returns the path of tool, or ends the test: skipped on a developer's
// machine, failed in CI. pkg names the Debian package that has it.
func Need(t testing.TB, tool, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err == nil {
		return path
	}
	if CI() {
		t.Fatalf("%s is missing: .ci/run must install the Debian package %s", tool, pkg)
	}
	t.Skipf("%s not installed (Debian package %s)", tool, pkg)
	return ""
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
