// Package ansible_test proves contrib/ansible with real SSH, real Ansible
// and real systemd: three Debian 12 hosts booted with systemd as PID 1 in
// systemd-nspawn (internal/testenv/debian), each with sshd on a loopback
// port of its own, driven by ansible-playbook from Debian's ansible-core
// with a key the test makes. The role corral_app installs the deb that
// packaging/build makes and sets up the example app on each host, twice
// (the second run changes nothing); rolling-reload.yml then deploys a good
// release under load, a release broken on the second host (the rollout
// stops there, the old workers serve, the third host is not touched), and
// the previous release back; corral delete removes what the role wrote.
//
// It needs root, mmdebstrap, systemd-nspawn, ansible-playbook and ssh;
// without them it skips, except with CI=true, where it fails.
package ansible_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/internal/testenv/debian"
)

const (
	app     = "hello"
	version = "0.0.0~fleet1"
	// secret is a value the env file must carry unchanged.
	secret = `a "quoted" $secret with \ and ` + "`" + `backticks`
	// rate paces each host's load, in requests per second: enough to see a
	// dropped request, little enough to leave the CPUs to Ansible.
	rate = 100
)

func TestFleet(t *testing.T) {
	debian.Need(t)
	testenv.Need(t, "ansible-playbook", "ansible-core")
	testenv.Need(t, "ssh", "openssh-client")
	testenv.Need(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	a := newAnsible(t, dir)
	pub, err := os.ReadFile(filepath.Join(dir, "id_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	release, err := filepath.Abs("release-tarball.yml")
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	phase := func(name string, start time.Time) {
		phases = append(phases, fmt.Sprintf("%-28s %6.1fs", name, time.Since(start).Seconds()))
	}
	t.Cleanup(func() { t.Logf("phases:\n%s", strings.Join(phases, "\n")) })

	start := time.Now()
	var deb string
	var buildErrs [2]error
	var wg sync.WaitGroup
	wg.Go(func() { deb, buildErrs[0] = buildDeb(filepath.Join(dir, "dist"), version) })
	wg.Go(func() { buildErrs[1] = buildReleases(dir, []string{"v1", "v2", "v3"}, []string{"v3-broken"}) })
	hosts, bootErr := bootHosts(t, 3, string(pub))
	wg.Wait()
	for _, err := range append(buildErrs[:], bootErr) {
		if err != nil {
			t.Fatal(err)
		}
	}
	phase("boot 3 hosts, build the deb", start)
	a.knowHosts(t, hosts)
	a.vars = map[string]any{
		"corral_app_name":         app,
		"corral_app_command":      []string{"/srv/hello/current/hello"},
		"corral_app_instances":    2,
		"corral_app_stop_timeout": "10s",
		"corral_app_environment":  map[string]string{"HELLO_MODE": "fleet test"},
		"corral_app_secrets":      map[string]string{"HELLO_TOKEN": secret},
		"corral_package":          deb,
		"corral_release_root":     "/srv/hello",
	}
	site := filepath.Join(dir, "site.yml")
	testenv.WriteFile(t, site, fmt.Sprintf(`- name: Set up the app
  hosts: all
  gather_facts: false
  pre_tasks:
    - name: Deploy the first release
      ansible.builtin.include_tasks: %s
  roles:
    - corral_app
`, release))
	// The same role without the release step, for a run that changes
	// only the app's variables.
	appOnly := filepath.Join(dir, "app.yml")
	testenv.WriteFile(t, appOnly, "- name: Set up the app\n  hosts: all\n  gather_facts: false\n  roles:\n    - corral_app\n")
	archive := func(name string) func(*host) string {
		return func(*host) string { return filepath.Join(dir, name+".tar.gz") }
	}

	start = time.Now()
	a.inventory(t, archive("v1"))
	r := a.play(t, "role", site)
	if r.err != nil {
		t.Fatalf("the role's first run failed: %v\n%s", r.err, r.tail())
	}
	before := map[string]status{}
	for _, h := range hosts {
		if rc := r.recap[h.name]; rc.changed == 0 || rc.failed != 0 {
			t.Errorf("%s: first run %+v, want changes and no failure", h.name, rc)
		}
		before[h.name] = checkApp(t, h)
	}
	phase("role, first run", start)

	start = time.Now()
	r = a.play(t, "role-again", site)
	if r.err != nil {
		t.Fatalf("the role's second run failed: %v\n%s", r.err, r.tail())
	}
	for _, h := range hosts {
		checkUnchanged(t, h, r, before[h.name])
	}
	phase("role, second run", start)
	if t.Failed() {
		t.FailNow()
	}

	// Changed variables: a new secret on the first host restarts corral
	// (systemd reads the env file at start); a setting corral refuses on
	// the second fails its rolling reload, and the role with corral's
	// reason, while the old workers serve; more workers on the third is a
	// rolling reload.
	start = time.Now()
	config := filepath.Join(hosts[1].m.Root, "etc/corral", app+".toml")
	good, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	hosts[0].vars = map[string]any{"corral_app_secrets": map[string]string{"HELLO_TOKEN": secret + " v2"}}
	hosts[1].vars = map[string]any{"corral_app_settings": map[string]string{"reload_failure": "sometimes"}}
	hosts[2].vars, hosts[2].workers = map[string]any{"corral_app_instances": 3}, 3
	a.inventory(t, archive("v1"))
	r = a.play(t, "role-changed", appOnly)
	if r.err == nil || r.recap[hosts[0].name].failed != 0 || r.recap[hosts[1].name].failed != 1 || r.recap[hosts[2].name].failed != 0 {
		t.Fatalf("the role's run with changed variables: %v, recap %v; want it to fail on %s only\n%s", r.err, r.recap, hosts[1].name, r.tail())
	}
	checkRestarted(t, hosts[0], r, before[hosts[0].name], secret+" v2")
	checkConfigRefused(t, hosts[1], r, before[hosts[1].name], "sometimes")
	checkNewGeneration(t, hosts[2], r, before[hosts[2].name], hosts[2].status(t), 1, "v1")
	// The next role run would write the good config again; the rollouts
	// below reload what the file says.
	if err := os.WriteFile(config, good, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		before[h.name] = h.status(t)
	}
	phase("role, changed variables", start)

	rolling := func(what string) run {
		return a.play(t, what, "rolling-reload.yml", "-e", "corral_app_name="+app, "-e", "corral_release_tasks="+release)
	}

	// A good release, one host at a time, under load on every host.
	start = time.Now()
	a.inventory(t, archive("v2"))
	loads := startLoads(hosts)
	r = rolling("rolling-good")
	reports := stopLoads(t, "good release", hosts, loads)
	if r.err != nil {
		t.Fatalf("rolling reload of a good release failed: %v\n%s", r.err, r.tail())
	}
	for _, h := range hosts {
		st := h.status(t)
		checkReloaded(t, h, r, before[h.name], st, 1, "v2")
		checkServedBoth(t, h, reports[h.name], before[h.name], st)
		before[h.name] = st
	}
	phase("rolling reload, good", start)

	// The next release, broken on the second host only.
	start = time.Now()
	a.inventory(t, func(h *host) string {
		if h == hosts[1] {
			return filepath.Join(dir, "v3-broken.tar.gz")
		}
		return filepath.Join(dir, "v3.tar.gz")
	})
	loads = startLoads(hosts)
	r = rolling("rolling-broken")
	stopLoads(t, "release broken on "+hosts[1].name, hosts, loads)
	if r.err == nil {
		t.Errorf("the rollout of a release broken on %s succeeded\n%s", hosts[1].name, r.tail())
	}
	checkReloaded(t, hosts[0], r, before[hosts[0].name], hosts[0].status(t), 1, "v3")
	checkKept(t, hosts[1], r, before[hosts[1].name], "v3-broken")
	checkUntouched(t, hosts[2], r, before[hosts[2].name], "v2")
	for _, h := range hosts {
		before[h.name] = h.status(t)
	}
	phase("rolling reload, broken", start)

	// Rolling back: the previous release everywhere, the same playbook.
	start = time.Now()
	a.inventory(t, archive("v2"))
	loads = startLoads(hosts)
	r = rolling("rolling-back")
	stopLoads(t, "rollback", hosts, loads)
	if r.err != nil {
		t.Fatalf("rolling back failed: %v\n%s", r.err, r.tail())
	}
	for _, h := range hosts {
		// The second host's failed reload used a generation number:
		// corral never gives one to two sets of workers.
		step := 1
		if h == hosts[1] {
			step = 2
		}
		checkReloaded(t, h, r, before[h.name], h.status(t), step, "v2")
	}
	phase("rolling reload, rollback", start)

	start = time.Now()
	for _, h := range hosts {
		checkDelete(t, h)
	}
	phase("corral delete", start)
}

// checkApp checks what the role's first run made on h: the deb, the app
// serving on its port, listed by corral ls as corral start's, with its
// secrets in a file only root reads and in corral's environment.
func checkApp(t *testing.T, h *host) status {
	t.Helper()
	if got := h.m.MustRun(t, "dpkg-query", "--show", "--showformat=${db:Status-Abbrev}${Version}", "corral"); got != "ii "+version {
		t.Errorf("%s: dpkg-query corral: %q, want ii %s", h.name, got, version)
	}
	if body := testenv.Get(t, h.addr); !strings.HasPrefix(body, "hello from worker") {
		t.Errorf("%s: GET http://%s/: %q", h.name, h.addr, body)
	}
	var ls []struct {
		Name    string   `json:"name"`
		State   string   `json:"state"`
		Online  int      `json:"online"`
		Listen  []string `json:"listen"`
		Started bool     `json:"started_by_corral"`
	}
	if err := json.Unmarshal([]byte(h.m.MustRun(t, "corral", "ls", "--json")), &ls); err != nil {
		t.Fatalf("%s: corral ls --json: %v", h.name, err)
	}
	if len(ls) != 1 || ls[0].Name != app || ls[0].State != "active" || ls[0].Online != 2 || !ls[0].Started || !slices.Equal(ls[0].Listen, []string{h.addr}) {
		t.Errorf("%s: corral ls: %+v, want %s active, 2 online, on %s, started by corral", h.name, ls, app, h.addr)
	}
	if mode := h.m.MustRun(t, "stat", "-c", "%a %U", "/etc/corral/"+app+".env"); strings.TrimSpace(mode) != "600 root" {
		t.Errorf("%s: /etc/corral/%s.env is %s, want 600 root", h.name, app, mode)
	}
	st := h.status(t)
	checkSecret(t, h, st, secret)
	if st.Generation != 1 || len(st.Workers) != 2 {
		t.Errorf("%s: corral status: generation %d, %d workers; want 1 and 2", h.name, st.Generation, len(st.Workers))
	}
	return st
}

// checkReloaded checks that the playbook's run reloaded h once, to
// release: it reported generation g -> g+step, as corral status says.
func checkReloaded(t *testing.T, h *host, r run, before, after status, step int, release string) {
	t.Helper()
	want := [2]int{before.Generation, before.Generation + step}
	if got := r.reports[h.name]; got != want {
		t.Errorf("%s: the playbook reported generation %d -> %d; want %d -> %d", h.name, got[0], got[1], want[0], want[1])
	}
	checkNewGeneration(t, h, r, before, after, step, release)
}

// checkNewGeneration checks that the run reloaded h, without a restart:
// generation g+step serves in every slot, running the release.
func checkNewGeneration(t *testing.T, h *host, r run, before, after status, step int, release string) {
	t.Helper()
	if rc := r.recap[h.name]; rc.failed != 0 || rc.changed == 0 {
		t.Errorf("%s: recap %+v, want changes and no failure", h.name, rc)
	}
	if after.Generation != before.Generation+step {
		t.Errorf("%s: generation %d, want %d", h.name, after.Generation, before.Generation+step)
	}
	if rel := h.releases(t, after); !slices.Equal(rel, []string{release}) || after.Online != h.workers || len(after.Workers) != h.workers {
		t.Errorf("%s: %d workers online of %d, running %v; want %d, all of %s", h.name, after.Online, len(after.Workers), rel, h.workers, release)
	}
	if after.MainPID != before.MainPID {
		t.Errorf("%s: corral is PID %d, was %d: want it reloaded, not restarted", h.name, after.MainPID, before.MainPID)
	}
	t.Logf("%s: generation %d -> %d, workers %v -> %v, release %s", h.name, before.Generation, after.Generation, before.pids(), after.pids(), release)
}

// checkUnchanged checks that the run changed nothing on h and restarted
// nothing: the same corral, the same workers, the same generation.
func checkUnchanged(t *testing.T, h *host, r run, before status) {
	t.Helper()
	if rc, ok := r.recap[h.name]; !ok || rc.changed != 0 || rc.failed != 0 || rc.ok == 0 {
		t.Errorf("%s: recap %+v (in the recap: %v), want ok > 0, changed=0, failed=0\n%s", h.name, rc, ok, r.tail())
	}
	st := h.status(t)
	if st.MainPID != before.MainPID || !slices.Equal(st.pids(), before.pids()) || st.Generation != before.Generation {
		t.Errorf("%s: corral is PID %d with workers %v, generation %d; before the run PID %d, %v, %d: want nothing restarted",
			h.name, st.MainPID, st.pids(), st.Generation, before.MainPID, before.pids(), before.Generation)
	}
}

// checkRestarted checks that the run restarted corral on h, which now has
// the secret in its environment.
func checkRestarted(t *testing.T, h *host, r run, before status, secret string) {
	t.Helper()
	st := h.status(t)
	if rc := r.recap[h.name]; rc.changed == 0 || rc.failed != 0 {
		t.Errorf("%s: recap %+v, want changes and no failure", h.name, rc)
	}
	if st.MainPID == before.MainPID || st.Online != h.workers || st.State != "active" {
		t.Errorf("%s: corral is PID %d (was %d), %s, %d online; want a new corral, active, %d online", h.name, st.MainPID, before.MainPID, st.State, st.Online, h.workers)
	}
	checkSecret(t, h, st, secret)
	t.Logf("%s: restarted for its new secret: corral PID %d -> %d", h.name, before.MainPID, st.MainPID)
}

// checkConfigRefused checks that the run failed on h with corral's reason
// for refusing the new config, which names the bad value, and that the
// old workers serve on.
func checkConfigRefused(t *testing.T, h *host, r run, before status, value string) {
	t.Helper()
	st := h.status(t)
	if !regexp.MustCompile(`corral@` + app + `\.service on ` + h.name + `: reload failed: .*` + value).MatchString(r.out) {
		t.Errorf("%s: no message with corral's reason naming %s:\n%s", h.name, value, r.tail())
	}
	if st.MainPID != before.MainPID || !slices.Equal(st.pids(), before.pids()) || st.Generation != before.Generation || st.Online != h.workers {
		t.Errorf("%s: corral PID %d, workers %v, generation %d, %d online; want %d, %v, %d kept", h.name, st.MainPID, st.pids(), st.Generation, st.Online,
			before.MainPID, before.pids(), before.Generation)
	}
	if body := testenv.Get(t, h.addr); !strings.HasPrefix(body, "hello from worker") {
		t.Errorf("%s: GET: %q", h.name, body)
	}
	t.Logf("%s: the new config was refused; generation %d, workers %v kept", h.name, st.Generation, st.pids())
}

// checkSecret checks that corral, and so its workers, got the secret.
func checkSecret(t *testing.T, h *host, st status, secret string) {
	t.Helper()
	environ := h.m.MustRun(t, "cat", fmt.Sprintf("/proc/%d/environ", st.MainPID))
	if !slices.Contains(strings.Split(environ, "\x00"), "HELLO_TOKEN="+secret) {
		t.Errorf("%s: corral's environment has no HELLO_TOKEN=%s: %q", h.name, secret, environ)
	}
}

// checkKept checks that the run failed at h, whose reload failed and whose
// old workers still serve, with the broken release in place.
func checkKept(t *testing.T, h *host, r run, before status, release string) {
	t.Helper()
	st := h.status(t)
	if rc := r.recap[h.name]; rc.failed != 1 {
		t.Errorf("%s: recap %+v, want failed=1", h.name, rc)
	}
	if _, ok := r.reports[h.name]; ok {
		t.Errorf("%s: the playbook reported generations for a failed host", h.name)
	}
	if !strings.Contains(r.out, "corral@"+app+".service on "+h.name+": reload failed: worker 0 of generation") {
		t.Errorf("%s: no failed-reload message in the output:\n%s", h.name, r.tail())
	}
	if st.Generation != before.Generation || !slices.Equal(st.pids(), before.pids()) || st.Online != h.workers {
		t.Errorf("%s: generation %d, workers %v, %d online; want generation %d kept, workers %v", h.name, st.Generation, st.pids(), st.Online, before.Generation, before.pids())
	}
	if st.LastReload == nil || st.LastReload.OK {
		t.Errorf("%s: last reload %+v, want a failed one", h.name, st.LastReload)
	}
	if link := strings.TrimSpace(h.m.MustRun(t, "readlink", "/srv/hello/current")); filepath.Base(link) != release {
		t.Errorf("%s: current is %s, want the release %s that failed", h.name, link, release)
	}
	if body := testenv.Get(t, h.addr); !strings.Contains(body, fmt.Sprintf("generation %d", before.Generation)) {
		t.Errorf("%s: GET: %q, want the old generation %d", h.name, body, before.Generation)
	}
	t.Logf("%s: reload failed (%s); generation %d and workers %v kept", h.name, st.LastReload.Message, st.Generation, st.pids())
}

// checkUntouched checks that the run never reached h: no release step, no
// reload.
func checkUntouched(t *testing.T, h *host, r run, before status, release string) {
	t.Helper()
	st := h.status(t)
	if rc, ok := r.recap[h.name]; ok && (rc.ok != 0 || rc.changed != 0) {
		t.Errorf("%s: recap %+v, want the host not reached", h.name, rc)
	}
	if st.Generation != before.Generation || !slices.Equal(st.pids(), before.pids()) {
		t.Errorf("%s: generation %d, workers %v; want %d, %v: never reloaded", h.name, st.Generation, st.pids(), before.Generation, before.pids())
	}
	if link := strings.TrimSpace(h.m.MustRun(t, "readlink", "/srv/hello/current")); filepath.Base(link) != release {
		t.Errorf("%s: current is %s, want %s still", h.name, link, release)
	}
	t.Logf("%s: not reached; generation %d, workers %v", h.name, st.Generation, st.pids())
}

// checkServedBoth checks that the load ran across h's reload: answers
// came from the old workers and from the new ones.
func checkServedBoth(t *testing.T, h *host, rep loadtest.Report, before, after status) {
	t.Helper()
	served := func(pids []int) bool {
		return slices.ContainsFunc(pids, func(p int) bool { return rep.ByPID[p] > 0 })
	}
	if !served(before.pids()) || !served(after.pids()) {
		t.Errorf("%s: answers by PID %v; want some from the old workers %v and some from the new %v", h.name, rep.ByPID, before.pids(), after.pids())
	}
}

// startLoads starts a paced load on every host's app: two clients with a
// new connection per request, two with one kept alive.
func startLoads(hosts []*host) map[string]*loadtest.Load {
	loads := map[string]*loadtest.Load{}
	for _, h := range hosts {
		loads[h.name] = loadtest.Options{Addr: h.addr, NewConn: 2, KeepAlive: 2, Rate: rate}.Start()
	}
	return loads
}

// stopLoads stops the loads and fails t unless each got no failure and at
// least a quarter of the requests its pace allows.
func stopLoads(t *testing.T, what string, hosts []*host, loads map[string]*loadtest.Load) map[string]loadtest.Report {
	t.Helper()
	reports := map[string]loadtest.Report{}
	for _, h := range hosts {
		rep := loads[h.name].Report()
		reports[h.name] = rep
		paced := int64(rate * rep.Elapsed.Seconds())
		t.Logf("%s, %s: %d requests ok, %d failed in %v (paced for %d)", what, h.name, rep.OK, rep.Failed, rep.Elapsed.Round(time.Millisecond), paced)
		if rep.Failed != 0 || rep.OK < paced/4 {
			t.Errorf("%s, %s: %d requests ok, %d failed (%v), want 0 failed and at least %d ok: %v", what, h.name, rep.OK, rep.Failed, rep.Kinds, paced/4, rep.Errs)
		}
	}
	return reports
}

// checkDelete runs corral delete on h and checks that it removed every
// file the role's record lists, and the record, and that the port is
// closed.
func checkDelete(t *testing.T, h *host) {
	t.Helper()
	var rec struct {
		Files []string `json:"files"`
		Links []string `json:"links"`
	}
	b, err := os.ReadFile(filepath.Join(h.m.Root, "var/lib/corral-apps", app+".json"))
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		t.Fatalf("%s: the role's record: %v", h.name, err)
	}
	if len(rec.Files) != 3 || len(rec.Links) != 2 {
		t.Errorf("%s: the record lists files %v and links %v; want the config, the drop-in, the env file and two links", h.name, rec.Files, rec.Links)
	}
	h.m.MustRun(t, "corral", "delete", app)
	for _, f := range append(append(rec.Files, rec.Links...), "/var/lib/corral-apps/"+app+".json") {
		if _, err := os.Lstat(filepath.Join(h.m.Root, f)); err == nil {
			t.Errorf("%s: %s is still there after corral delete", h.name, f)
		}
	}
	if out := strings.TrimSpace(h.m.MustRun(t, "corral", "ls", "--json")); out != "[]" {
		t.Errorf("%s: corral ls --json after corral delete: %s", h.name, out)
	}
	if c, err := net.DialTimeout("tcp", h.addr, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("%s: %s still accepts after corral delete", h.name, h.addr)
	}
}
