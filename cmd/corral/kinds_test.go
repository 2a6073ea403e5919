package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestRefusedSocketKinds passes corral, as systemd would, each kind of
// descriptor a socket unit can pass that corral refuses: corral exits 2
// with one line that names the unit's setting and the fix, and starts no
// worker. The config it is given does not exist: the socket is the mistake
// to report, as with Accept=yes, where systemd starts a service per
// connection under a name no config has.
func TestRefusedSocketKinds(t *testing.T) {
	fifoR, fifoW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer fifoR.Close()
	defer fifoW.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	netlink, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	netlinkFile := os.NewFile(uintptr(netlink), "netlink")
	defer netlinkFile.Close()

	for _, tc := range []struct {
		name    string
		file    *os.File
		setting string
	}{
		{"connection", acceptedConnection(t), "Accept=yes"},
		{"fifo", fifoR, "ListenFIFO="},
		{"special file", devNull, "ListenSpecial="},
		{"netlink", netlinkFile, "ListenNetlink="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := activated(t, []*os.File{tc.file}, "run", "--config", filepath.Join(t.TempDir(), "missing.toml"))
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Errorf("exit code %d, want 2; output:\n%s", code, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.setting+" in the socket unit") ||
				!strings.Contains(lines[0], "sockets from systemd: inherited fd 3") {
				t.Errorf("want one line naming fd 3 and %s, got:\n%s", tc.setting, out)
			}
		})
	}
}

// activated returns corral with args, run as systemd runs a socket-activated
// service: files as fds 3.., LISTEN_FDS, and LISTEN_PID its own PID, which
// the shell sets before it execs corral.
func activated(t *testing.T, files []*os.File, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$@"`, "sh", exe}, args...)...)
	cmd.Env = append(os.Environ(), "CORRAL_TEST_MAIN=1", "CORRAL_TEST_WORKER=echo", "NOTIFY_SOCKET=",
		"LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES=", "RUNTIME_DIRECTORY="+t.TempDir())
	cmd.ExtraFiles = files
	return cmd
}

// acceptedConnection returns the server end of a TCP connection, what a
// socket unit with Accept=yes passes.
func acceptedConnection(t *testing.T) *os.File {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	f, err := server.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestDatagramSocketActivation: systemd-socket-activate binds a UDP socket
// (its --datagram, systemd's ListenDatagram=) and starts corral at the
// first datagram, which waits in the socket until a worker of the Go
// example reads it, and is answered; then both workers answer.
func TestDatagramSocketActivation(t *testing.T) {
	tool := testenv.Need(t, "systemd-socket-activate", "systemd")
	echo := buildUDPEcho(t)
	addr := testenv.FreeUDPAddr(t)
	exe, _ := os.Executable()
	control := filepath.Join(t.TempDir(), "control.sock")
	cmd := exec.Command(tool, "--datagram", "-l", addr, "--fdname=dns", "-E", "CORRAL_TEST_MAIN=1",
		exe, "run", "-i", "2", "--control", control, "--", echo)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	in := &instance{t: t, control: control, stderr: stderr, done: done}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr)
		}
	})
	// systemd-socket-activate binds the socket at once; wait for that
	// before the first datagram, which then starts corral.
	testenv.WaitFor(t, 30*time.Second, "systemd-socket-activate to bind "+addr, func() bool {
		c, err := net.ListenPacket("udp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if got, err := testenv.AskUDP(addr, "first"); err != nil || !strings.HasPrefix(got, "first from worker ") {
		t.Fatalf("the first datagram, which started corral: answer %q, %v", got, err)
	}
	st := waitServing(t, in, 2)
	d, err := loadtest.DatagramOptions{Addr: addr, Rate: udpRate}.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	waitAnswered(t, d, pidList(st))
	if !strings.Contains(stderr.String(), "socket udp:"+addr+" (dns) goes to every worker") {
		t.Errorf("corral did not log the socket systemd passed:\n%s", stderr)
	}
}
