package packaging_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// machine is a Debian root file system booted with systemd-nspawn: systemd
// is PID 1 of its own PID namespace, and shares the host's network, so a
// socket it listens on at 127.0.0.1 is reachable from the test.
type machine struct {
	root    string
	nspawn  *exec.Cmd
	exited  chan struct{} // closed when nspawn has exited
	systemd int           // the host PID of the machine's systemd
	log     string        // nspawn's output: the machine's console
}

// boot starts systemd-nspawn --boot on root and waits until systemd reports
// the system running. The machine powers off when t ends: SIGTERM to
// nspawn, which asks systemd to power off, and then the test waits for it.
func boot(t *testing.T, root string) *machine {
	t.Helper()
	m := &machine{root: root, exited: make(chan struct{}), log: root + ".console"}
	console, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	m.nspawn = exec.Command("systemd-nspawn", "-D", root, "--boot", "--register=no", "--keep-unit")
	m.nspawn.Stdout, m.nspawn.Stderr = console, console
	if err := m.nspawn.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { m.nspawn.Wait(); close(m.exited) }()
	t.Cleanup(m.powerOff)
	m.systemd = m.findSystemd(t)
	state := ""
	testenv.WaitFor(t, 2*time.Minute, "the machine to boot", func() bool {
		out, _ := m.run("systemctl", "is-system-running")
		state = strings.TrimSpace(out)
		return state == "running" || state == "degraded"
	})
	if state == "degraded" {
		out, _ := m.run("systemctl", "--failed", "--no-legend")
		t.Logf("the machine booted degraded; failed units:\n%s", out)
	}
	return m
}

// findSystemd returns the host PID of nspawn's child, the machine's PID 1.
func (m *machine) findSystemd(t *testing.T) int {
	t.Helper()
	pid := 0
	testenv.WaitFor(t, time.Minute, "systemd-nspawn to start systemd", func() bool {
		pid = childOf(m.nspawn.Process.Pid, "systemd")
		return pid != 0
	})
	return pid
}

// childOf returns the PID of the child of parent whose command is comm, or
// 0 when there is none.
func childOf(parent int, comm string) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", parent))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(c)) == comm {
				return pid
			}
		}
	}
	return 0
}

// powerOff stops the machine and waits until nspawn has exited, so that
// nothing uses the root file system when t's directory is removed.
func (m *machine) powerOff() {
	m.nspawn.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return
	case <-time.After(90 * time.Second):
	}
	m.nspawn.Process.Kill()
	<-m.exited
}

// run runs a command in the machine, in every namespace of its systemd, and
// returns its output, stdout and stderr together.
func (m *machine) run(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(m.systemd), "-a", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return out.String(), err
}

// mustRun runs a command in the machine and fails t if it fails.
func (m *machine) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := m.run(args...)
	if err != nil {
		t.Fatalf("in the machine: %v\n%s", err, out)
	}
	return out
}

// show returns properties of a unit in the machine.
func (m *machine) show(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	out := m.mustRun(t, "systemctl", "show", unit, "--property="+strings.Join(props, ","))
	p := make(map[string]string)
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	return p
}

// processes returns the command of every process in the machine's PID
// namespace other than systemd's own, by host PID.
func (m *machine) processes(t *testing.T) map[int]string {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.systemd))
	if err != nil {
		t.Fatal(err)
	}
	procs := make(map[int]string)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(dir))
		if other, err := os.Readlink(dir + "/ns/pid"); err != nil || other != ns {
			continue
		}
		if cmdline, err := os.ReadFile(dir + "/cmdline"); err == nil {
			procs[pid] = strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return procs
}
