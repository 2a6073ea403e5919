package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
	"golang.org/x/sys/unix"
)

// testTimeout bounds each test's node processes, dials and requests.
const testTimeout = 30 * time.Second

// npmTimeout bounds the npm install of a test's packages.
const npmTimeout = 3 * time.Minute

// preloadPath returns the absolute path of corral-preload.js.
func preloadPath(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("corral-preload.js")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// inherited is a listening socket the test owns and hands to node
// processes, as systemd or corral would.
type inherited struct {
	network, addr string // what the test dials
	file          *os.File
}

// listenTCP returns a loopback TCP socket on a free port.
func listenTCP(t *testing.T) inherited {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return inherit(t, ln)
}

// listenUnix returns a unix socket in a temporary directory.
func listenUnix(t *testing.T) inherited {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "app.sock"))
	if err != nil {
		t.Fatal(err)
	}
	return inherit(t, ln)
}

// inherit duplicates ln's descriptor in blocking mode, as corral hands it
// to workers. Both are closed when the test ends.
func inherit(t *testing.T, ln net.Listener) inherited {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		t.Fatal(err)
	}
	return inherited{network: ln.Addr().Network(), addr: ln.Addr().String(), file: f}
}

// port returns the TCP port of s.
func (s inherited) port(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// jsPrelude starts every app.js of these tests: a handler that answers
// with the PID, and report, which prints one JSON line for the test.
const jsPrelude = `'use strict';
const http = require('http');
const handler = (req, res) => res.end(String(process.pid));
const report = (r) => console.log(JSON.stringify({ pid: process.pid, ...r }));
// outcome resolves to 'listening' or the error code of server's listen.
const outcome = (server) => new Promise((resolve) => {
  server.once('listening', () => resolve('listening'));
  server.once('error', (err) => resolve(err.code));
});
`

// report is what an app.js prints when it is ready.
type report struct {
	PID       int    `json:"pid"`
	Port      int    `json:"port"`      // server.address().port
	Path      string `json:"path"`      // server.address() of a unix socket server
	Listening bool   `json:"listening"` // the 'listening' event came before the callback
	Other     int    `json:"other"`     // the port of a listen(0)
	Outcome   string `json:"outcome"`   // 'listening' or the error code of a listen
}

// child describes a node process.
type child struct {
	script  string     // app.js, written to dir
	dir     string     // where app.js goes; a new t.TempDir() when empty
	files   []*os.File // fds 3, 4, ...
	env     []string   // added to the test's environment minus LISTEN_*, NODE_OPTIONS, PORT
	ownPID  bool       // set LISTEN_PID to the node process' own PID
	preload bool       // load corral-preload.js

	nodeOptions string // NODE_OPTIONS before the preload's --require
}

// command returns the exec.Cmd that runs c under ctx. With ownPID it goes
// through /bin/sh, which exports LISTEN_PID=$$ and execs node, keeping the
// PID: Go cannot set a variable between fork and exec, and corral's exec
// trampoline (package activation) does the same for real workers.
func (c child) command(t *testing.T, ctx context.Context) *exec.Cmd {
	t.Helper()
	nodePath := testenv.Need(t, "node", "nodejs")
	dir := c.dir
	if dir == "" {
		dir = t.TempDir()
	}
	app := filepath.Join(dir, "app.js")
	if err := os.WriteFile(app, []byte(c.script), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := []string{nodePath, app}
	if c.ownPID {
		argv = append([]string{"/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.ExtraFiles = c.files
	cmd.Env = append(cleanEnv(), c.env...)
	if c.preload {
		opts := strings.TrimSpace(c.nodeOptions + " --require " + strconv.Quote(preloadPath(t)))
		cmd.Env = append(cmd.Env, "NODE_OPTIONS="+opts)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// cleanEnv returns the test's environment without the variables these
// tests set for their children.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LISTEN_") && !strings.HasPrefix(kv, "NODE_OPTIONS=") &&
			!strings.HasPrefix(kv, "PORT=") {
			env = append(env, kv)
		}
	}
	return env
}

// proc is a running node process. The test's cleanup kills it.
type proc struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	stderr bytes.Buffer // read only after wait

	once    sync.Once
	waitErr error
}

// start starts c; the process is killed when ctx is done or the test ends.
func start(t *testing.T, ctx context.Context, c child) *proc {
	t.Helper()
	p := &proc{cmd: c.command(t, ctx)}
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReader(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { p.kill() })
	return p
}

// kill ends the process and waits for it; it returns Wait's error.
func (p *proc) kill() error {
	p.once.Do(func() {
		p.cmd.Process.Kill()
		p.waitErr = p.cmd.Wait()
	})
	return p.waitErr
}

// report reads the next line the app prints, which must be a report.
// Reading is bounded: the process dies with the test's context.
func (p *proc) report(t *testing.T) report {
	t.Helper()
	line, err := p.out.ReadString('\n')
	var r report
	if err == nil {
		err = json.Unmarshal([]byte(line), &r)
	}
	if err != nil {
		werr := p.kill()
		t.Fatalf("read node's report %q: %v (node: %v); stderr:\n%s", line, err, werr, &p.stderr)
	}
	if r.PID != p.cmd.Process.Pid {
		t.Fatalf("report from PID %d, want node's PID %d", r.PID, p.cmd.Process.Pid)
	}
	return r
}

// get makes one request on a new connection to s and returns the body.
func get(ctx context.Context, s inherited) (string, error) {
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, s.network, s.addr)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://corral.test/", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("get %s %s: %w", s.network, s.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	if err != nil {
		return "", fmt.Errorf("get %s %s: %w", s.network, s.addr, err)
	}
	return string(body), nil
}

// mustServe fails the test unless a request on s is answered by p.
func mustServe(t *testing.T, ctx context.Context, s inherited, p *proc) {
	t.Helper()
	body, err := get(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(p.cmd.Process.Pid); body != want {
		t.Fatalf("%s %s answered %q, want node's PID %s", s.network, s.addr, body, want)
	}
}

// listenEnv returns LISTEN_FDS and LISTEN_FDNAMES for the named sockets.
func listenEnv(names ...string) []string {
	return []string{
		"LISTEN_FDS=" + strconv.Itoa(len(names)),
		"LISTEN_FDNAMES=" + strings.Join(names, ":"),
	}
}
