package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// Without systemd, the commands of apps by name say so and point at
// corral run. The test needs a machine where no system manager runs, as
// these test machines are (systemd is not PID 1 here).
func TestAppsWithoutSystemd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the system manager is root's; as another user the commands ask for sudo")
	}
	if _, err := os.Stat("/run/systemd/private"); err == nil {
		t.Skip("a system manager runs here")
	}
	for _, args := range [][]string{{"ls"}, {"reload", "api"}, {"delete", "api"}, {"logs", "api"}, {"status", "api"}} {
		var stdout, stderr bytes.Buffer
		code := corral(args, &stdout, &stderr)
		if code != exitFailure || !strings.Contains(stderr.String(), "need systemd") || !strings.Contains(stderr.String(), "use corral run") {
			t.Errorf("corral %s: exit %d, stderr %q; want 1 and that it needs systemd, with corral run instead", strings.Join(args, " "), code, stderr.String())
		}
	}
}

// Bad input to the commands of apps by name is refused before any
// connection to systemd, with exit 2 and the fix.
func TestAppsBadInput(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("app.js", []byte("x"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"start"}, "what to run?"},
		{[]string{"start", "app.js", "extra"}, "one SCRIPT, then its own arguments after --"},
		{[]string{"start", "app.js", "--port", "http"}, "want a port number"},
		{[]string{"start", "app.js", "--listen", "nohost"}, "--listen"},
		{[]string{"start", "app.js", "--port", "3000", "-n", "a b"}, `app name "a b"`},
		{[]string{"start", "app.js", "--port", "3000", "--system", "--user"}, "exclude each other"},
		{[]string{"start", "app.js", "--port", "3000", "--listen", "a=:1", "--listen", "b=:2"}, "one socket unit gives all its sockets one name"},
		{[]string{"start", "-i", "lots", "app.js"}, "instances"},
		{[]string{"reload", "bad/name"}, "is not allowed"},
		{[]string{"reload", "api", "--name", "api"}, "exclude each other"},
		{[]string{"status", "a", "b"}, "one app at a time"},
		{[]string{"stop"}, "which app?"},
		{[]string{"delete"}, "give one app's name"},
		{[]string{"logs", "api", "--lines", "-1"}, "--lines -1"},
		{[]string{"import"}, "give one ecosystem file"},
		{[]string{"import", "apps.yaml"}, "want an ecosystem file ending in .js"},
		{[]string{"ls", "api"}, "corral status api"},
	} {
		var stdout, stderr bytes.Buffer
		code := corral(tc.args, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("corral %s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, stderr.String(), tc.want)
		}
	}
}
