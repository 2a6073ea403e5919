// Package packaging_test builds corral's .deb and .rpm with packaging/build,
// lints them, installs the rpm into a scratch root, and proves the deb on a
// Debian 12 booted with systemd as PID 1 in systemd-nspawn: install, serve,
// reload and upgrade under load without a failed request, remove and purge
// without leftovers.
//
// It needs root, mmdebstrap, systemd-nspawn (systemd-container), nsenter,
// lintian, rpm and rpmlint. Without them it skips, except with CI=true,
// where it fails. It takes a few minutes, and more when the Debian image
// is not yet cached (see internal/testenv/debian).
package packaging_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/internal/testenv/debian"

	"github.com/corraldev/corral/internal/loadtest"
)

// The versions the test builds: the second upgrades the first.
const (
	version1 = "0.0.0~e2e1"
	version2 = "0.0.0~e2e2"
)

// tools are the programs the test runs on the host.
var tools = []string{"mmdebstrap", "systemd-nspawn", "nsenter", "tar", "lintian", "rpm", "rpmlint", "git"}

// requirements skips t, or fails it with CI=true, when the test cannot run.
func requirements(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		testenv.Missing(t, "the packaging test needs %s (apt-get install mmdebstrap systemd-container lintian rpm rpmlint)",
			strings.Join(missing, ", "))
	}
}

func TestPackages(t *testing.T) {
	requirements(t)
	dir := t.TempDir()
	dist := filepath.Join(dir, "dist")
	start := time.Now()
	build(t, dist, version1)
	build(t, dist, version2)
	t.Logf("packaging/build, twice: %v", time.Since(start).Round(time.Second))

	// One root file system for the run; each subtest unpacks its own copy.
	start = time.Now()
	image := debian.Build(t)
	t.Logf("Debian image (cached in %s): %v", debian.CacheDir, time.Since(start).Round(time.Second))

	deb1 := filepath.Join(dist, "corral_"+version1+"_"+runtime.GOARCH+".deb")
	deb2 := filepath.Join(dist, "corral_"+version2+"_"+runtime.GOARCH+".deb")
	rpm1 := filepath.Join(dist, "corral-"+version1+"-1."+rpmArch()+".rpm")
	t.Run("lintian", func(t *testing.T) { lintian(t, deb1) })
	t.Run("rpmlint", func(t *testing.T) { rpmlint(t, rpm1) })
	t.Run("rpm", func(t *testing.T) { rpmInstall(t, rpm1, image.UnpackTemp(t)) })
	t.Run("deb", func(t *testing.T) { debBooted(t, deb1, deb2) })
}

// build runs packaging/build for this machine's architecture.
func build(t *testing.T, dist, version string) {
	t.Helper()
	cmd := exec.Command("./packaging/build", runtime.GOARCH)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packaging/build: %v\n%s", err, out)
	}
}

func rpmArch() string {
	return map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
}

// run runs a command on the host and fails t if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lintian: no error, overrides only from the package's own file.
func lintian(t *testing.T, deb string) {
	out, _ := exec.Command("lintian", "--pedantic", "--info", deb).CombinedOutput()
	t.Logf("lintian --pedantic --info:\n%s", out)
	if m := regexp.MustCompile(`(?m)^E: .*$`).FindAllString(string(out), -1); len(m) > 0 {
		t.Errorf("lintian errors:\n%s", strings.Join(m, "\n"))
	}
}

// rpmlint: no error, with packaging/rpmlint.toml.
func rpmlint(t *testing.T, rpm string) {
	out, err := exec.Command("rpmlint", "-c", "rpmlint.toml", rpm).CombinedOutput()
	t.Logf("rpmlint -c packaging/rpmlint.toml:\n%s", out)
	if err != nil || strings.Contains(string(out), ": E: ") {
		t.Errorf("rpmlint: %v", err)
	}
}

// shipped are the files both packages ship, with the unit directory as
// /lib on Debian and /usr/lib on Fedora, and the licenses where each
// distribution keeps them, as rpm -qlp sorts them.
func shipped(unitDir string) []string {
	files := []string{
		"/etc/corral",
		"/etc/corral/example.toml",
		"/usr/bin/corral",
		unitDir + "/corral@.service",
		unitDir + "/corral@.socket",
		"/usr/lib/systemd/user/corral@.service",
		"/usr/lib/systemd/user/corral@.socket",
		"/usr/share/doc/corral/README.md",
	}
	if unitDir == "/lib/systemd/system" {
		return append(files, "/usr/share/doc/corral/copyright", "/usr/share/man/man1/corral.1.gz")
	}
	return append(files, "/usr/share/licenses/corral/LICENSE", "/usr/share/licenses/corral/THIRD-PARTY-NOTICES",
		"/usr/share/man/man1/corral.1.gz")
}

// rpmInstall lists the rpm and installs it into a scratch root, the Debian
// root file system, where its scriptlets run (chrooted, no systemd running),
// then erases it.
func rpmInstall(t *testing.T, rpm, root string) {
	files := strings.Fields(run(t, "rpm", "-qlp", rpm))
	if want := shipped("/usr/lib/systemd/system"); !slices.Equal(files, want) {
		t.Errorf("rpm -qlp: %v, want %v", files, want)
	}
	if got := strings.Fields(run(t, "rpm", "-qcp", rpm)); !slices.Equal(got, []string{"/etc/corral/example.toml"}) {
		t.Errorf("rpm -qcp (config files): %v", got)
	}
	run(t, "rpm", "--root", root, "--initdb")
	run(t, "rpm", "--root", root, "-i", "--nodeps", rpm)
	if out := run(t, "rpm", "--root", root, "-V", "corral"); out != "" {
		t.Errorf("rpm -V after the install:\n%s", out)
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(root, f)); err != nil {
			t.Errorf("after rpm -i: %v", err)
		}
	}
	run(t, "rpm", "--root", root, "-e", "corral")
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
			t.Errorf("after rpm -e, %s is still there", f)
		}
	}
}

// app is the example app as the deb test installs it: hello, two workers,
// corral@api.socket moved to a TCP port on loopback.
type app struct {
	addr string
}

// install puts hello, /etc/corral/api.toml and the TCP drop-in into the
// machine's root file system. The service runs as a dynamic user, so every
// file is readable by all.
func (a *app) install(t *testing.T, root string) {
	t.Helper()
	hello := filepath.Join(root, "usr/local/bin/hello")
	cmd := exec.Command("go", "build", "-o", hello, "./examples/hello")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/hello: %v\n%s", err, out)
	}
	testenv.WriteFile(t, filepath.Join(root, "etc/corral/api.toml"),
		"command = [\"/usr/local/bin/hello\"]\ninstances = 2\nstop_timeout = \"10s\"\n")
	testenv.WriteFile(t, filepath.Join(root, "etc/systemd/system/corral@api.socket.d/tcp.conf"),
		"[Socket]\nListenStream=\nListenStream="+a.addr+"\n")
}

// get makes one request on a new connection and returns the body.
func (a *app) get(t *testing.T) string { return testenv.Get(t, a.addr) }

// underLoad runs f while 4 clients open a connection per request and 4
// keep theirs alive, and fails t if a request failed.
func (a *app) underLoad(t *testing.T, what string, f func()) {
	t.Helper()
	l := loadtest.Start(a.addr, 4, 4)
	start := time.Now()
	f()
	took := time.Since(start)
	for range 5 {
		a.get(t)
	}
	ok, failed, errs := l.Stop()
	t.Logf("%s took %v; under load %d requests ok, %d failed", what, took.Round(time.Millisecond), ok, failed)
	if failed > 0 || ok == 0 {
		t.Errorf("%s: %d requests ok, %d failed: %v", what, ok, failed, errs)
	}
}

// debBooted installs, uses, upgrades, removes and purges the deb on a
// booted Debian.
func debBooted(t *testing.T, deb1, deb2 string) {
	m := debian.Boot(t, debian.Options{})
	root := m.Root
	for _, deb := range []string{deb1, deb2} {
		m.CopyIn(t, deb, "/root/"+filepath.Base(deb))
	}
	a := &app{addr: testenv.FreeAddr(t)}

	m.MustRun(t, "apt-get", "install", "-y", "/root/"+filepath.Base(deb1))
	if out := m.MustRun(t, "corral", "--version"); !strings.Contains(out, version1) {
		t.Errorf("corral --version: %q, want %s", out, version1)
	}
	if out := m.MustRun(t, "dpkg-query", "-W", "-f=${Conffiles}", "corral"); !strings.Contains(out, "/etc/corral/example.toml") {
		t.Errorf("conffiles: %q, want /etc/corral/example.toml", out)
	}
	if out, _ := m.Run(t.Context(), "systemctl", "is-enabled", "corral@api.socket"); strings.TrimSpace(out) != "disabled" {
		t.Errorf("corral@api.socket is %q after the install, want disabled", strings.TrimSpace(out))
	}
	a.install(t, root)
	m.MustRun(t, "systemctl", "daemon-reload")
	m.MustRun(t, "systemctl", "start", "corral@api.socket")
	if body := a.get(t); !strings.HasPrefix(body, "hello from worker") {
		t.Fatalf("GET: %q", body)
	}
	testenv.WaitFor(t, time.Minute, "corral@api.service to be active", func() bool {
		return m.Show(t, "corral@api.service", "ActiveState")["ActiveState"] == "active"
	})

	a.underLoad(t, "systemctl reload corral@api", func() {
		m.MustRun(t, "systemctl", "reload", "corral@api")
	})

	before := m.Show(t, "corral@api.service", "MainPID")["MainPID"]
	a.underLoad(t, "the upgrade to "+version2, func() {
		m.MustRun(t, "dpkg", "-i", "/root/"+filepath.Base(deb2))
	})
	after := m.Show(t, "corral@api.service", "MainPID", "ActiveState", "ExecMainStartTimestamp")
	if after["MainPID"] == before || after["ActiveState"] != "active" {
		t.Errorf("after the upgrade: corral@api is %s with MainPID %s (was %s); want restarted", after["ActiveState"], after["MainPID"], before)
	}
	if exe := m.MustRun(t, "readlink", "/proc/"+after["MainPID"]+"/exe"); strings.Contains(exe, "deleted") {
		t.Errorf("after the upgrade corral runs the old binary: %s", exe)
	}
	if out := m.MustRun(t, "corral", "--version"); !strings.Contains(out, version2) {
		t.Errorf("corral --version after the upgrade: %q, want %s", out, version2)
	}

	m.MustRun(t, "apt-get", "remove", "-y", "corral")
	checkRemoved(t, m, root)
	if _, err := os.Stat(filepath.Join(root, "etc/corral/example.toml")); err != nil {
		t.Errorf("after apt remove the conffile is gone: %v", err)
	}
	m.MustRun(t, "apt-get", "purge", "-y", "corral")
	checkRemoved(t, m, root)
	checkPurged(t, root)
}

// checkRemoved checks that no corral unit is loaded and no process of the
// app runs in the machine, and that the package's files other than its
// conffiles are gone.
func checkRemoved(t *testing.T, m *debian.Machine, root string) {
	t.Helper()
	if out := m.MustRun(t, "systemctl", "list-units", "--no-legend", "--plain", "--state=active", "corral@*"); strings.TrimSpace(out) != "" {
		t.Errorf("active corral units after the removal:\n%s", out)
	}
	procs := m.Processes(t)
	for pid, cmd := range procs {
		if strings.Contains(cmd, "corral") || strings.Contains(cmd, "hello") {
			t.Errorf("process %d %q is still running after the removal", pid, cmd)
		}
	}
	t.Logf("after the removal the machine runs %d processes, none of corral's", len(procs))
	for _, f := range shipped("/lib/systemd/system") {
		if f == "/etc/corral" || f == "/etc/corral/example.toml" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
			t.Errorf("after the removal %s is still there", f)
		}
	}
}

// keptAfterPurge are the paths named corral that stay after a purge: the
// admin's own files, which policy says a purge leaves alone, and the test's
// copies of the packages.
var keptAfterPurge = []string{
	"/etc/corral",
	"/etc/corral/api.toml",
	"/etc/systemd/system/corral@api.socket.d",
	"/root/corral_" + version1 + "_" + runtime.GOARCH + ".deb",
	"/root/corral_" + version2 + "_" + runtime.GOARCH + ".deb",
}

// checkPurged checks that no file named corral is left in the root file
// system but keptAfterPurge.
func checkPurged(t *testing.T, root string) {
	t.Helper()
	var kept []string
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		rel := "/" + strings.TrimPrefix(path, root+"/")
		if err != nil || slices.Contains([]string{"/proc", "/sys", "/dev"}, rel) {
			return fs.SkipDir
		}
		if !strings.Contains(d.Name(), "corral") {
			return nil
		}
		if !slices.Contains(keptAfterPurge, rel) {
			t.Errorf("after the purge %s is still there", rel)
		}
		kept = append(kept, rel)
		return nil
	})
	t.Logf("after the purge, named corral: %s", strings.Join(kept, " "))
	if _, err := os.Stat(filepath.Join(root, "etc/corral/example.toml")); err == nil {
		t.Error("after the purge the conffile /etc/corral/example.toml is still there")
	}
}
