package systemd_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"

	"github.com/corraldev/corral/contrib/systemd"
	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/workers"
	"golang.org/x/sys/unix"
)

// userManagerUnsupported lists the shipped directives that the tests drop,
// because a user manager cannot apply them: DynamicUser= allocates a system
// user, and the runtime directory it would hand to that user is in the
// manager's $XDG_RUNTIME_DIR, mode 0700. Every other directive, sandboxing
// included, runs as shipped (the manager runs as root).
var userManagerUnsupported = []string{"DynamicUser"}

// app is one instance of the shipped units, installed in a user manager.
type app struct {
	m        *manager
	template string // "corral", or the name given to systemd.Units
	name     string // the instance: the app's name
	addr     string // the TCP address the socket unit listens on; "" for its unix socket
	sock     string // its unix socket, when addr is ""
	config   string // its config file
	ready    string // the config's ready setting, if any
}

// appOptions describe an app to install.
type appOptions struct {
	template  string   // default "corral"
	instances int      // default 2
	command   []string // default the example app, hello
	unix      bool     // keep the socket unit's unix socket instead of a TCP port
	ready     string   // the config's ready setting; default corral's (notify)
}

// installApp installs the shipped units, as a user manager can run them,
// and a config for the app "api", and reloads the manager.
func installApp(t testing.TB, m *manager, opts appOptions) *app {
	t.Helper()
	corral, hello := buildBinaries(t)
	if opts.template == "" {
		opts.template = systemd.DefaultTemplate
	}
	if opts.instances == 0 {
		opts.instances = 2
	}
	if opts.command == nil {
		opts.command = []string{hello}
	}
	a := &app{m: m, template: opts.template, name: "api", config: filepath.Join(m.etc, "api.toml"), ready: opts.ready}
	units, err := systemd.Units(systemd.Options{Template: opts.template, Corral: corral})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		testenv.WriteFile(t, filepath.Join(m.unitDir, u.Name), forUserManager(t, u.Name, u.Text, m))
	}
	if opts.unix {
		a.sock = filepath.Join(m.runtime, "corral", a.name+".sock")
	} else {
		// The README's drop-in that moves an instance to a TCP port.
		a.addr = testenv.FreeAddr(t)
		testenv.WriteFile(t, filepath.Join(m.unitDir, a.socket()+".d", "tcp.conf"),
			"[Socket]\nListenStream=\nListenStream="+a.addr+"\n")
	}
	// No journald runs here: corral's and the workers' output go to a file.
	log := filepath.Join(m.dir, a.service()+".log")
	testenv.WriteFile(t, filepath.Join(m.unitDir, a.service()+".d", "log.conf"),
		"[Service]\nStandardOutput=append:"+log+"\nStandardError=append:"+log+"\n")
	a.writeConfig(t, opts.instances, opts.command...)
	m.mustSystemctl(t, "daemon-reload")
	return a
}

// forUserManager returns a shipped unit as the tests run it: paths under
// /etc/corral and /run/corral moved into the manager's directories, and the
// directives of userManagerUnsupported dropped. Nothing else changes.
func forUserManager(t testing.TB, name, text string, m *manager) string {
	t.Helper()
	moves := map[string]string{".service": "/etc/corral/", ".socket": "/run/corral/"}
	for suffix, path := range moves {
		if strings.HasSuffix(name, suffix) && !strings.Contains(text, path) {
			t.Fatalf("%s no longer mentions %s: update forUserManager", name, path)
		}
	}
	text = strings.NewReplacer("/etc/corral/", m.etc+"/", "/run/corral/", m.runtime+"/corral/").Replace(text)
	var lines []string
	for _, line := range strings.SplitAfter(text, "\n") {
		key, _, _ := strings.Cut(line, "=")
		if !slices.Contains(userManagerUnsupported, strings.TrimSpace(key)) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "")
}

func (a *app) service() string { return a.template + "@" + a.name + ".service" }
func (a *app) socket() string  { return a.template + "@" + a.name + ".socket" }

// control returns corral's control socket: $RUNTIME_DIRECTORY/control.sock.
func (a *app) control() string {
	return filepath.Join(a.m.runtime, "corral", a.name, "control.sock")
}

// writeConfig writes the app's config file: instances workers of command.
func (a *app) writeConfig(t testing.TB, instances int, command ...string) {
	t.Helper()
	quoted := make([]string, len(command))
	for i, c := range command {
		quoted[i] = strconv.Quote(c)
	}
	config := fmt.Sprintf("command = [%s]\ninstances = %d\n", strings.Join(quoted, ", "), instances)
	if a.ready != "" {
		config += fmt.Sprintf("ready = %q\n", a.ready)
	}
	testenv.WriteFile(t, a.config, config)
}

// status asks corral for its status over the control socket, as `corral
// status` does.
func (a *app) status(t testing.TB) workers.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.Status(ctx, a.control())
	if err != nil {
		t.Fatalf("corral status: %v", err)
	}
	return st
}

// workerPIDs returns the PIDs of the workers in st.
func workerPIDs(st workers.Status) map[int]bool {
	pids := make(map[int]bool)
	for _, w := range st.Workers {
		pids[w.PID] = true
	}
	return pids
}

// onlinePIDs returns the PIDs of the online workers in st.
func onlinePIDs(st workers.Status) map[int]bool {
	pids := make(map[int]bool)
	for _, w := range st.Workers {
		if w.State == "online" {
			pids[w.PID] = true
		}
	}
	return pids
}

// client returns an HTTP client that opens a new connection per request.
func (a *app) client() *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if a.addr == "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.sock)
		}
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// get makes one request on a new connection and returns the body.
func (a *app) get(t testing.TB) string {
	t.Helper()
	host := a.addr
	if host == "" {
		host = a.name
	}
	resp, err := a.client().Get("http://" + host + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s, %v: %s", resp.Status, err, body)
	}
	return string(body)
}

// process is a process watched through a pidfd, which cannot mistake a
// new process that reuses the PID for it.
type process struct {
	pid, fd int
}

// watch opens pidfds for pids; they are closed when t ends.
func watch(t testing.TB, pids ...int) []process {
	t.Helper()
	var ps []process
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open %d: %v", pid, err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		ps = append(ps, process{pid: pid, fd: fd})
	}
	return ps
}

// waitExited waits until every process in ps has exited: a pidfd turns
// readable then. It fails t after timeout.
func waitExited(t testing.TB, timeout time.Duration, ps []process) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		fds := make([]unix.PollFd, len(ps))
		for i, p := range ps {
			fds[i] = unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN}
		}
		left := time.Until(deadline)
		if _, err := unix.Poll(fds, int(max(left.Milliseconds(), 0))); err != nil && err != unix.EINTR {
			t.Fatalf("poll pidfds: %v", err)
		}
		var alive []process
		for i, p := range ps {
			if fds[i].Revents&unix.POLLIN == 0 {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			return
		}
		if left <= 0 {
			pids := make([]int, len(alive))
			for i, p := range alive {
				pids[i] = p.pid
			}
			t.Fatalf("still running after %v: %s", timeout, describe(pids))
		}
		ps = alive
	}
}
