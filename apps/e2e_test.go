package apps_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/apps"
	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := powerOff(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// corral runs corral in the machine as who (root: "") in dir and returns
// its output and whether it exited 0.
func (m *machine) corral(who, dir string, args ...string) (string, bool) {
	out, err := m.run(who, dir, append([]string{"corral"}, args...)...)
	return out, err == nil
}

// mustCorral runs corral and fails t unless it exits 0.
func (m *machine) mustCorral(t testing.TB, who, dir string, args ...string) string {
	t.Helper()
	out, ok := m.corral(who, dir, args...)
	if !ok {
		t.Fatalf("corral %s, as %s, failed:\n%s", strings.Join(args, " "), whoName(who), out)
	}
	return out
}

// ls returns `corral ls --json`, after checking that every object has the
// keys the README promises.
func (m *machine) ls(t testing.TB, who string) []apps.Info {
	t.Helper()
	out := m.mustCorral(t, who, "/", "ls", "--json")
	var raw []map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("corral ls --json: %v\n%s", err, out)
	}
	for _, obj := range raw {
		for _, k := range []string{"name", "state", "online", "instances", "generation", "restarts", "memory_bytes", "cpu_percent", "listen", "last_reload"} {
			if _, ok := obj[k]; !ok {
				t.Errorf("corral ls --json: no key %q in %v", k, obj)
			}
		}
	}
	var infos []apps.Info
	json.Unmarshal([]byte(out), &infos)
	return infos
}

// app returns the app name of `corral ls --json`, failing t without it.
func (m *machine) app(t testing.TB, who, name string) apps.Info {
	t.Helper()
	for _, in := range m.ls(t, who) {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("corral ls has no app %s", name)
	return apps.Info{}
}

// status returns `corral status NAME --json`.
func (m *machine) status(t testing.TB, who, name string) apps.Status {
	t.Helper()
	out := m.mustCorral(t, who, "/", "status", name, "--json")
	var st apps.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("corral status --json: %v\n%s", err, out)
	}
	return st
}

// pidsOf returns the PIDs of an app's workers, sorted.
func pidsOf(st apps.Status) []int {
	var pids []int
	for _, w := range st.Workers {
		pids = append(pids, w.PID)
	}
	slices.Sort(pids)
	return pids
}

var pidRE = regexp.MustCompile(`pid (\d+)`)

// servingPIDs makes requests, each on a new connection, until n distinct
// worker PIDs have answered, and returns them, sorted. The workers all
// accept on the one socket, so which answers is the kernel's choice: it
// fails t after 500 requests.
func servingPIDs(t testing.TB, addr string, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	for i := 0; i < 500 && len(seen) < n; i++ {
		body := testenv.Get(t, addr)
		m := pidRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("GET %s: %q names no PID", addr, body)
		}
		var pid int
		fmt.Sscan(m[1], &pid)
		seen[pid] = true
	}
	if len(seen) < n {
		t.Fatalf("after 500 requests to %s, %d PIDs answered (%v), want %d", addr, len(seen), seen, n)
	}
	var pids []int
	for pid := range seen {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids
}

// refused reports whether nothing listens on addr.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
	}
	return err != nil
}

// underLoad runs f while 4 clients open a connection per request and 4
// keep theirs alive, and fails t if a request failed or none was made.
func underLoad(t *testing.T, addr, what string, f func()) {
	t.Helper()
	l := loadtest.Start(addr, 4, 4)
	start := time.Now()
	f()
	took := time.Since(start)
	for range 5 {
		testenv.Get(t, addr)
	}
	ok, failed, errs := l.Stop()
	t.Logf("%s took %v; under load %d requests ok, %d failed", what, took.Round(time.Millisecond), ok, failed)
	if failed > 0 || ok == 0 {
		t.Errorf("%s: %d requests ok, %d failed: %v", what, ok, failed, errs)
	}
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// As root, under the system manager: a Go worker started by name serves
// from two PIDs, reloads under load without a failed request, refuses a
// broken release with corral's reason while the old PIDs serve, restarts,
// stops, shows its journal, and delete leaves nothing of it.
func TestSystemApp(t *testing.T) {
	m := boot(t)
	addr := testenv.FreeAddr(t)
	m.must(t, "", "/", "mkdir", "-p", "/srv/api")
	out := m.mustCorral(t, "", "/srv/api", "start", "/usr/local/bin/hello", "-n", "api", "-i", "2", "--port", port(addr))
	t.Logf("corral start:\n%s", out)
	if !strings.Contains(out, "api") || !strings.Contains(out, "2/2") {
		t.Errorf("corral start printed no row of api, 2/2 online:\n%s", out)
	}
	pids := servingPIDs(t, addr, 2)
	in := m.app(t, "", "api")
	if in.State != "active" || in.Online != 2 || in.Instances != 2 || in.Generation != 1 || in.MemoryBytes == 0 ||
		!slices.Contains(in.Listen, "[::]:"+port(addr)) {
		t.Errorf("corral ls: %+v; want api active, 2/2 online, generation 1, memory, listening on %s", in, port(addr))
	}
	if st := m.status(t, "", "api"); !slices.Equal(pidsOf(st), pids) || st.Enabled != "enabled" {
		t.Errorf("corral status api: workers %v, %s; but %v served, and want it enabled", pidsOf(st), st.Enabled, pids)
	}

	underLoad(t, addr, "corral reload api", func() { m.mustCorral(t, "", "/", "reload", "api") })
	st := m.status(t, "", "api")
	if st.Generation != 2 || st.LastReload == nil || !st.LastReload.OK {
		t.Errorf("after corral reload: generation %d, last reload %+v; want 2, ok", st.Generation, st.LastReload)
	}
	pids = pidsOf(st)

	good, err := os.ReadFile(filepath.Join(m.Root, "etc/corral/api.toml"))
	if err != nil {
		t.Fatal(err)
	}
	broken := regexp.MustCompile(`(?m)^command = .*$`).ReplaceAllString(string(good), `command = ["/bin/sh", "-c", "echo broken release >&2; exit 1"]`)
	m.write(t, "", "/etc/corral/api.toml", broken)
	out, ok := m.corral("", "/", "reload", "api")
	t.Logf("corral reload of a broken release:\n%s", out)
	if ok || !strings.Contains(out, "reload failed: worker") || !strings.Contains(out, "exited with status 1") || !strings.Contains(out, "generation 2 kept") ||
		!strings.Contains(out, "its output is in corral logs api") {
		t.Errorf("corral reload of a broken release: exit 0 = %v, want non-zero with corral's reason:\n%s", ok, out)
	}
	if served := servingPIDs(t, addr, 2); !slices.Equal(served, pids) {
		t.Errorf("after the failed reload %v serve, want the old %v", served, pids)
	}
	m.write(t, "", "/etc/corral/api.toml", string(good))

	before := m.app(t, "", "api").MainPID
	m.mustCorral(t, "", "/", "restart", "api")
	if in := m.app(t, "", "api"); in.MainPID == before || in.State != "active" || in.Online != 2 {
		t.Errorf("after corral restart: %+v; want a new corral (was PID %d), active, 2/2", in, before)
	}
	servingPIDs(t, addr, 2)

	logs := m.mustCorral(t, "", "/", "logs", "api", "--lines", "200")
	// corral names the app as its commands do, not by its control socket.
	for _, want := range []string{"broken release", "reload failed", "starting 2 workers", "(corral reload api)"} {
		if !strings.Contains(logs, want) {
			t.Errorf("corral logs api lacks %q:\n%s", want, logs)
		}
	}

	m.mustCorral(t, "", "/", "stop", "api")
	if !refused(addr) {
		t.Errorf("after corral stop, %s still accepts connections", addr)
	}
	if in := m.app(t, "", "api"); in.State != "inactive" {
		t.Errorf("after corral stop, api is %s, want inactive", in.State)
	}

	m.mustCorral(t, "", "/", "delete", "api")
	checkDeleted(t, m, "", addr, []string{
		"/etc/corral/api.toml", "/etc/systemd/system/corral@api.socket.d",
		"/etc/systemd/system/sockets.target.wants/corral@api.socket",
		"/etc/systemd/system/multi-user.target.wants/corral@api.service",
		"/var/lib/corral-apps/api.json",
	})
}

// checkDeleted checks that an app left no file, unit or listening port.
func checkDeleted(t *testing.T, m *machine, who, addr string, paths []string) {
	t.Helper()
	for _, p := range paths {
		if m.exists(p) {
			t.Errorf("after corral delete, %s is still there", p)
		}
	}
	if infos := m.ls(t, who); len(infos) != 0 {
		t.Errorf("after corral delete, corral ls shows %+v", infos)
	}
	args := []string{"systemctl", "list-units", "--all", "--no-legend", "--plain", "corral@*"}
	if who != "" {
		args = userctl(args[1:]...)
	}
	// systemd unloads a unit that nothing needs when it collects garbage,
	// soon after the delete's daemon-reload, not at once.
	var out string
	if err := poll(30*time.Second, "systemd to unload the app's units", func() bool {
		out = m.must(t, who, "/", args...)
		return strings.TrimSpace(out) == ""
	}); err != nil {
		show := []string{"systemctl", "show", "corral@*", "-p", "Id,Refs,TriggeredBy,Triggers,WantedBy,RequiredBy,Job,NeedDaemonReload"}
		if who != "" {
			show = userctl(show[1:]...)
		}
		detail, _ := m.run(who, "/", show...)
		t.Errorf("%v: after corral delete, systemd still has units:\n%s\n%s", err, out, detail)
	}
	if !refused(addr) {
		t.Errorf("after corral delete, %s still accepts connections", addr)
	}
}

// As a user with lingering, under her own manager: a Node app written for
// PM2, started PM2's way, serves from two PIDs, shows in ls, reloads under
// load, has a journal, and delete leaves nothing of it.
func TestUserApp(t *testing.T) {
	m := boot(t)
	testenv.Need(t, "node", "nodejs")
	addr := testenv.FreeAddr(t)
	src, err := os.ReadFile("../examples/pm2-app/app.js")
	if err != nil {
		t.Fatal(err)
	}
	home := "/home/" + user
	m.must(t, user, "/", "mkdir", "-p", home+"/shop")
	m.write(t, user, home+"/shop/app.js", string(src))
	out := m.mustCorral(t, user, home+"/shop", "start", "app.js", "-i", "2", "--port", port(addr))
	t.Logf("corral start app.js, as %s:\n%s", user, out)
	if strings.Contains(out, "no lingering") {
		t.Errorf("corral start says %s has no lingering, but she has:\n%s", user, out)
	}
	servingPIDs(t, addr, 2)
	in := m.app(t, user, "app")
	if in.State != "active" || in.Online != 2 || in.Generation != 1 {
		t.Errorf("corral ls, as %s: %+v; want app active, 2/2 online, generation 1", user, in)
	}
	if len(m.ls(t, "")) != 0 {
		t.Errorf("root's corral ls shows %s's apps", user)
	}
	underLoad(t, addr, "corral reload app, as "+user, func() { m.mustCorral(t, user, "/", "reload", "app") })
	if g := m.app(t, user, "app").Generation; g != 2 {
		t.Errorf("after corral reload, generation %d, want 2", g)
	}
	if logs := m.mustCorral(t, user, "/", "logs", "app"); !strings.Contains(logs, "reload done") {
		t.Errorf("corral logs app, as %s, lacks the reload:\n%s", user, logs)
	}
	m.mustCorral(t, user, "/", "delete", "app")
	checkDeleted(t, m, user, addr, []string{
		home + "/.config/corral/app.toml", home + "/.config/systemd/user/corral@app.socket.d",
		home + "/.config/systemd/user/sockets.target.wants", home + "/.config/systemd/user/default.target.wants",
		home + "/.local/state/corral-apps",
	})
}

// An app set up by hand under a template of `corral units --template`
// shows in ls and takes reload by name; delete leaves it alone, since
// corral start did not make it, and says how to remove it.
func TestHandMadeApp(t *testing.T) {
	m := boot(t)
	addr := testenv.FreeAddr(t)
	m.mustCorral(t, "", "/", "units", "--template", "app")
	m.write(t, "", "/etc/corral/hand.toml", "command = [\"/usr/local/bin/hello\"]\ninstances = 2\n")
	m.write(t, "", "/etc/systemd/system/app@hand.socket.d/port.conf", "[Socket]\nListenStream=\nListenStream="+addr+"\n")
	m.must(t, "", "/", "systemctl", "daemon-reload")
	m.must(t, "", "/", "systemctl", "start", "app@hand.service")
	t.Cleanup(func() {
		m.run("", "/", "systemctl", "stop", "app@hand.socket", "app@hand.service")
		m.run("", "/", "rm", "-rf", "/etc/corral/hand.toml", "/etc/systemd/system/app@hand.socket.d", "/etc/systemd/system/app@.service", "/etc/systemd/system/app@.socket")
		m.run("", "/", "systemctl", "daemon-reload")
	})
	in := m.app(t, "", "hand")
	if in.Template != "app" || in.State != "active" || in.Online != 2 || in.Record {
		t.Errorf("corral ls: %+v; want hand of the template app, active, 2/2, not started by corral", in)
	}
	m.mustCorral(t, "", "/", "reload", "hand")
	if g := m.app(t, "", "hand").Generation; g != 2 {
		t.Errorf("after corral reload hand, generation %d, want 2", g)
	}
	out, ok := m.corral("", "/", "delete", "hand")
	if ok || !strings.Contains(out, "not made by corral start") || !strings.Contains(out, "systemctl disable --now app@hand.socket app@hand.service") {
		t.Errorf("corral delete of a hand-made app: exit 0 = %v, want a refusal that says how:\n%s", ok, out)
	}
	if !m.exists("/etc/corral/hand.toml") {
		t.Error("corral delete removed the hand-made app's config")
	}
	servingPIDs(t, addr, 2)
}
