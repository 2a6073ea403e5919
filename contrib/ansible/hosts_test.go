package ansible_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/internal/testenv/debian"
)

// repo is the checkout's root, from this package's directory.
const repo = "../.."

// host is one booted Debian of the fleet: an Ansible target with sshd on a
// loopback port of its own, and the app on another.
type host struct {
	name    string // in the inventory: web1, web2, web3
	sshPort int
	addr    string // the app's socket, 127.0.0.1:PORT
	m       *debian.Machine
	// vars are the host's own variables in the inventory, over the
	// group's; workers is the number of workers it should run.
	vars    map[string]any
	workers int
}

// bootHosts boots n hosts at once, each with sshd on its own port taking
// the public key pub for root, and powers them off when t ends.
func bootHosts(t *testing.T, n int, pub string) ([]*host, error) {
	hosts := make([]*host, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range hosts {
		h := &host{name: fmt.Sprintf("web%d", i+1), addr: testenv.FreeAddr(t), workers: 2}
		h.sshPort = port(t, testenv.FreeAddr(t))
		hosts[i] = h
		dir := t.TempDir()
		wg.Go(func() {
			h.m, errs[i] = debian.Start(t.Context(), debian.Options{
				Name:  fmt.Sprintf("fleet-%d-%s", os.Getpid(), h.name),
				Dir:   dir,
				Setup: func(root string) error { return sshd(root, h.sshPort, pub) },
				Logf:  t.Logf,
			})
		})
	}
	wg.Wait()
	for _, h := range hosts {
		if h.m == nil {
			continue
		}
		t.Cleanup(func() {
			if err := h.m.PowerOff(); err != nil {
				t.Error(err)
			}
			if t.Failed() {
				b, _ := os.ReadFile(h.m.Console)
				lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
				t.Logf("console of %s (%s), the end:\n%s", h.name, h.m.Name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		})
	}
	return hosts, errors.Join(errs...)
}

func port(t *testing.T, addr string) int {
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sshd sets up the root file system for sshd on 127.0.0.1:port (the
// machines share the host's network), with root's authorized key, and
// enables it: the image has ssh.service disabled.
func sshd(root string, port int, pub string) error {
	files := []struct {
		path, text string
		mode       os.FileMode
	}{
		{"etc/ssh/sshd_config.d/fleet-test.conf", fmt.Sprintf(
			"Port %d\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n", port), 0o644},
		{"root/.ssh/authorized_keys", pub, 0o600},
	}
	for _, f := range files {
		path := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(f.text), f.mode); err != nil {
			return err
		}
	}
	link := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ssh.service")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	return os.Symlink("/lib/systemd/system/ssh.service", link)
}

// status is what the test reads of `corral status NAME --json`.
type status struct {
	State      string `json:"state"`
	Generation int    `json:"generation"`
	Online     int    `json:"online"`
	Instances  int    `json:"instances"`
	MainPID    int    `json:"pid"`
	LastReload *struct {
		OK      bool   `json:"ok"`
		Message string `json:"message"`
	} `json:"last_reload"`
	Workers []struct {
		PID        int `json:"pid"`
		Generation int `json:"generation"`
	} `json:"workers"`
}

// status runs corral status on the host, inside it.
func (h *host) status(t *testing.T) status {
	t.Helper()
	var st status
	if err := json.Unmarshal([]byte(h.m.MustRun(t, "corral", "status", app, "--json")), &st); err != nil {
		t.Fatalf("%s: corral status --json: %v", h.name, err)
	}
	return st
}

// pids returns the PIDs of the workers, sorted.
func (st status) pids() []int {
	var p []int
	for _, w := range st.Workers {
		p = append(p, w.PID)
	}
	slices.Sort(p)
	return p
}

// releases returns the release each worker runs: the directory under
// /srv/hello/releases of its executable.
func (h *host) releases(t *testing.T, st status) []string {
	t.Helper()
	var rel []string
	for _, pid := range st.pids() {
		exe := strings.TrimSpace(h.m.MustRun(t, "readlink", fmt.Sprintf("/proc/%d/exe", pid)))
		rel = append(rel, filepath.Base(filepath.Dir(exe)))
	}
	return slices.Compact(rel)
}

// ansible runs Ansible as a user would, with its own configuration, key,
// known hosts and temporary directories, all in dir.
type ansible struct {
	dir   string
	hosts []*host
	vars  map[string]any // for every host
}

// newAnsible writes the key, the known hosts and ansible.cfg into dir.
func newAnsible(t *testing.T, dir string) *ansible {
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "corral-fleet-test", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	roles, err := filepath.Abs("roles")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`[defaults]
roles_path = %[2]s
inventory = %[1]s/inventory.yml
remote_user = root
private_key_file = %[1]s/id_ed25519
host_key_checking = True
interpreter_python = /usr/bin/python3
forks = 3
nocolor = True
local_tmp = %[1]s/ansible-local
retry_files_enabled = False

[ssh_connection]
ssh_args = -F none -o UserKnownHostsFile=%[1]s/known_hosts -o IdentitiesOnly=yes -o ControlMaster=auto -o ControlPersist=30s
control_path_dir = %[1]s/cp
pipelining = True
`, dir, roles)
	testenv.WriteFile(t, filepath.Join(dir, "ansible.cfg"), cfg)
	return &ansible{dir: dir}
}

// knowHosts writes the hosts' keys into known_hosts, as a user would after
// checking them: Ansible checks them.
func (a *ansible) knowHosts(t *testing.T, hosts []*host) {
	a.hosts = hosts
	var b strings.Builder
	for _, h := range hosts {
		key, err := os.ReadFile(filepath.Join(h.m.Root, "etc/ssh/ssh_host_ed25519_key.pub"))
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(key))
		fmt.Fprintf(&b, "[127.0.0.1]:%d %s %s\n", h.sshPort, fields[0], fields[1])
	}
	testenv.WriteFile(t, filepath.Join(a.dir, "known_hosts"), b.String())
}

// inventory writes inventory.yml: every host with its ports, the release
// archive release(h) names and its own vars, and the vars for all.
func (a *ansible) inventory(t *testing.T, release func(h *host) string) {
	hosts := map[string]any{}
	for _, h := range a.hosts {
		vars := map[string]any{
			"ansible_host":           "127.0.0.1",
			"ansible_port":           h.sshPort,
			"corral_app_listen":      []string{h.addr},
			"corral_health_url":      "http://" + h.addr + "/healthz",
			"corral_release_archive": release(h),
		}
		for k, v := range h.vars {
			vars[k] = v
		}
		hosts[h.name] = vars
	}
	b, err := json.MarshalIndent(map[string]any{"all": map[string]any{"hosts": hosts, "vars": a.vars}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(a.dir, "inventory.yml"), string(b)+"\n") // JSON is YAML
}

// run is one ansible-playbook run: its output and what the test reads of
// it.
type run struct {
	out     string
	timed   string // out with the seconds since the start before each line
	err     error
	took    time.Duration
	recap   map[string]recap
	reports map[string][2]int // per host, the generations the playbook reported
}

// recap is a host's line of the PLAY RECAP.
type recap struct{ ok, changed, unreachable, failed, skipped, rescued int }

var (
	recapLine  = regexp.MustCompile(`(?m)^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)\s+rescued=(\d+)`)
	reportLine = regexp.MustCompile(`corral@\S+ on (\S+): generation (\d+) -> (\d+)`)
)

// play runs ansible-playbook with the playbook and extra arguments; what
// names the run in the log.
func (a *ansible) play(t *testing.T, what, playbook string, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-playbook", append([]string{playbook}, args...)...)
	cmd.Env = append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(a.dir, "ansible.cfg"),
		"ANSIBLE_HOME="+filepath.Join(a.dir, "ansible-home"), "LANG=C.UTF-8", "LC_ALL=C.UTF-8")
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	var out, timed bytes.Buffer
	cmd.Stdout = &stamped{w: &timed, copy: &out, start: start}
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	r := run{out: out.String(), timed: timed.String(), err: err, took: time.Since(start), recap: map[string]recap{}, reports: map[string][2]int{}}
	for _, m := range recapLine.FindAllStringSubmatch(r.out, -1) {
		n := make([]int, 6)
		for i := range n {
			n[i], _ = strconv.Atoi(m[i+2])
		}
		r.recap[m[1]] = recap{n[0], n[1], n[2], n[3], n[4], n[5]}
	}
	for _, m := range reportLine.FindAllStringSubmatch(r.out, -1) {
		before, _ := strconv.Atoi(m[2])
		after, _ := strconv.Atoi(m[3])
		r.reports[m[1]] = [2]int{before, after}
	}
	var cpu time.Duration
	if ps := cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	t.Logf("%s: ansible-playbook %s took %v (controller CPU %v), exit %v; recap %v", what, filepath.Base(playbook),
		r.took.Round(time.Millisecond), cpu.Round(time.Millisecond), err, r.recap)
	return r
}

// tail returns the end of the run's output, with times, for a failure
// message.
func (r run) tail() string {
	lines := strings.Split(strings.TrimRight(r.timed, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-60):], "\n")
}

// buildDeb builds corral's deb with packaging/build, as the packaging test
// does, and returns its path.
func buildDeb(dir, version string) (string, error) {
	cmd := exec.Command("./packaging/build", runtime.GOARCH)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "DIST="+dir, "VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("packaging/build: %w\n%s", err, out)
	}
	return filepath.Join(dir, "corral_"+version+"_"+runtime.GOARCH+".deb"), nil
}

// buildReleases builds the example app and writes a tarball per release
// into dir: RELEASE.tar.gz holds the app as `hello`, and each name of
// broken a `hello` that exits at start, as a broken release does.
func buildReleases(dir string, good, broken []string) error {
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, "./examples/hello")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./examples/hello: %w\n%s", err, out)
	}
	hello, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	fail := []byte("#!/bin/sh\necho 'hello: this release is broken: exiting at start' >&2\nexit 1\n")
	for _, r := range good {
		if err := writeTarball(filepath.Join(dir, r+".tar.gz"), hello); err != nil {
			return err
		}
	}
	for _, r := range broken {
		if err := writeTarball(filepath.Join(dir, r+".tar.gz"), fail); err != nil {
			return err
		}
	}
	return nil
}

// writeTarball writes a gzipped tarball of one file, hello, mode 0755.
func writeTarball(path string, hello []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(hello)), ModTime: time.Now(), Typeflag: tar.TypeReg})
	if err == nil {
		_, err = tw.Write(hello)
	}
	for _, c := range []interface{ Close() error }{tw, zw, f} {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// stamped copies what it is written to copy, and to w with each line
// prefixed by the seconds since start, which shows where a run spends its
// time.
type stamped struct {
	w, copy *bytes.Buffer
	start   time.Time
	partial bool // the last write ended inside a line
}

func (s *stamped) Write(p []byte) (int, error) {
	n := len(p)
	s.copy.Write(p)
	for len(p) > 0 {
		if !s.partial {
			fmt.Fprintf(s.w, "%7.2f ", time.Since(s.start).Seconds())
		}
		line, rest, found := bytes.Cut(p, []byte("\n"))
		s.w.Write(line)
		if found {
			s.w.WriteByte('\n')
		}
		s.partial, p = !found, rest
	}
	return n, nil
}
