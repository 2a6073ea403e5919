package apps_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// Input that corral refuses before it writes anything gets an error that
// names the fix, and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	m := boot(t)
	addr := testenv.FreeAddr(t)
	m.must(t, "", "/", "mkdir", "-p", "/srv/taken")
	m.mustCorral(t, "", "/srv/taken", "start", "/usr/local/bin/hello", "-n", "taken", "-i", "1", "--port", port(addr))
	t.Cleanup(func() { m.corral("", "/", "delete", "taken") })
	other := testenv.FreeAddr(t)
	m.write(t, user, "/home/"+user+"/app.js", "require('http').createServer((q, s) => s.end('x')).listen(process.env.PORT)\n")
	for _, tc := range []struct {
		what, who, dir string
		args           []string
		want           []string
	}{
		{"a name in use", "", "/srv", []string{"start", "/usr/local/bin/hello", "-n", "taken", "--port", port(other)},
			[]string{"exists", "--force"}},
		{"a port another app holds", "", "/srv", []string{"start", "/usr/local/bin/hello", "-n", "thief", "--port", port(addr)},
			[]string{"port " + port(addr) + " is taken by the app taken"}},
		{"a name systemd refuses", "", "/srv", []string{"start", "/usr/local/bin/hello", "-n", "my app", "--port", port(other)},
			[]string{`app name "my app"`, "letters, digits"}},
		{"the reserved name", "", "/srv", []string{"start", "/usr/local/bin/hello", "-n", "all", "--port", port(other)},
			[]string{"reserved"}},
		{"no port", "", "/srv", []string{"start", "/usr/local/bin/hello", "-n", "noport"},
			[]string{"--port PORT", "EADDRINUSE"}},
		{"a command that does not exist", "", "/srv", []string{"start", "-n", "x", "--port", port(other), "--", "/srv/nope"},
			[]string{`"/srv/nope"`, "no such file"}},
		{"a script that does not exist", "", "/srv", []string{"start", "missing.js", "--port", port(other)},
			[]string{`"missing.js"`, "no such file"}},
		{"a script the service cannot see", "", "/home/" + user, []string{"start", "app.js", "--port", port(other)},
			[]string{"/home/" + user + "/app.js is under /home", "ProtectHome=yes", "corral start --user"}},
		{"a template that is not there", "", "/srv", []string{"start", "/usr/local/bin/hello", "-n", "t", "--template", "nope", "--port", port(other)},
			[]string{"no unit nope@.service", "corral units --template nope"}},
		{"the system manager, not as root", user, "/", []string{"start", "--system", "/usr/local/bin/hello", "--port", port(other)},
			[]string{"only root", "sudo", "--user"}},
		{"a port below 1024, as a user", user, "/", []string{"start", "/usr/local/bin/hello", "--port", "80"},
			[]string{"below 1024"}},
		{"reload of an unknown name", "", "/", []string{"reload", "nope"},
			[]string{`no such app "nope"`, "the apps are: taken"}},
		{"delete of an unknown name", "", "/", []string{"delete", "nope"},
			[]string{`no such app "nope"`, "taken"}},
		{"status of an unknown name", "", "/", []string{"status", "nope"},
			[]string{`no such app "nope"`}},
		{"logs of an unknown name", "", "/", []string{"logs", "nope"},
			[]string{`no such app "nope"`}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			before := m.must(t, "", "/", "find", "/etc/corral", "/etc/systemd/system", "/var/lib/corral-apps", "/home/"+user)
			out, ok := m.corral(tc.who, tc.dir, tc.args...)
			if ok {
				t.Fatalf("corral %s: exit 0, want an error:\n%s", strings.Join(tc.args, " "), out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("corral %s: the error lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
				}
			}
			if after := m.must(t, "", "/", "find", "/etc/corral", "/etc/systemd/system", "/var/lib/corral-apps", "/home/"+user); after != before {
				t.Errorf("corral %s changed files:\nbefore:\n%s\nafter:\n%s", strings.Join(tc.args, " "), before, after)
			}
		})
	}
	if in := m.app(t, "", "taken"); in.State != "active" || in.Online != 1 {
		t.Errorf("after the refused commands, taken is %s with %d online, want active, 1", in.State, in.Online)
	}
	testenv.Get(t, addr)

	// Several names: each is reported, and one that fails fails the command.
	out, ok := m.corral("", "/", "restart", "taken", "nope")
	if ok || !strings.Contains(out, "taken: restarted") || !strings.Contains(out, `restart nope: no such app "nope"`) {
		t.Errorf("corral restart taken nope: exit 0 = %v, want each reported and a failure:\n%s", ok, out)
	}

	// --force replaces the app: its new port serves, its old one is closed.
	m.mustCorral(t, "", "/srv/taken", "start", "/usr/local/bin/hello", "-n", "taken", "-i", "2", "--port", port(other), "--force")
	servingPIDs(t, other, 2)
	if !refused(addr) {
		t.Errorf("after corral start --force, the old port %s still accepts connections", addr)
	}
	if in := m.app(t, "", "taken"); in.Online != 2 || !slices.Contains(in.Listen, "[::]:"+port(other)) {
		t.Errorf("after corral start --force: %+v, want 2 online on %s", in, port(other))
	}
}

// An app that never comes online fails its start within its ready
// timeout, with corral's reason, and stays visible as failed for logs and
// delete; one that crashes shows its own output.
func TestStartThatFails(t *testing.T) {
	m := boot(t)
	m.must(t, "", "/", "mkdir", "-p", "/srv/bad")
	for _, tc := range []struct {
		name    string
		command []string
		within  time.Duration
		want    []string
	}{
		{"never", []string{"--ready-timeout", "3s", "--", "/bin/sleep", "600"}, 20 * time.Second,
			[]string{"no worker came online: worker 0 did not come online within 3s"}},
		{"crash", []string{"--", "/bin/sh", "-c", "echo cannot open the database >&2; exit 3"}, 20 * time.Second,
			[]string{"cannot open the database", "corral logs crash"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			args := append([]string{"start", "-n", tc.name, "-i", "1", "--port", port(addr)}, tc.command...)
			start := time.Now()
			out, ok := m.corral("", "/srv/bad", args...)
			took := time.Since(start)
			t.Logf("corral %s: %v\n%s", strings.Join(args, " "), took.Round(time.Millisecond), out)
			if ok {
				t.Fatal("exit 0, want a failure")
			}
			if took > tc.within {
				t.Errorf("the start took %v to fail, want under %v", took, tc.within)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the error lacks %q", w)
				}
			}
			if in := m.app(t, "", tc.name); in.State != "failed" {
				t.Errorf("corral ls shows %s as %s, want failed", tc.name, in.State)
			}
			m.mustCorral(t, "", "/", "logs", tc.name)
			m.mustCorral(t, "", "/", "delete", tc.name)
			if m.exists("/etc/corral/" + tc.name + ".toml") {
				t.Errorf("after delete, /etc/corral/%s.toml is still there", tc.name)
			}
		})
	}
}
