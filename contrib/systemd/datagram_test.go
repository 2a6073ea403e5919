package systemd_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
)

// udpEcho is examples/udp-echo, built once for all tests.
var udpEcho struct {
	once sync.Once
	path string
	err  error
}

// buildUDPEcho builds examples/udp-echo into the base directory.
func buildUDPEcho(t *testing.T) string {
	t.Helper()
	udpEcho.once.Do(func() {
		udpEcho.path = filepath.Join(base, "bin", "udp-echo")
		if out, err := exec.Command("go", "build", "-o", udpEcho.path, "github.com/corraldev/corral/examples/udp-echo").CombinedOutput(); err != nil {
			udpEcho.err = fmt.Errorf("go build examples/udp-echo: %v\n%s", err, out)
		}
	})
	if udpEcho.err != nil {
		t.Fatal(udpEcho.err)
	}
	return udpEcho.path
}

// TestDatagramSocketUnit: the README's UDP drop-in on corral@api.socket
// (ListenDatagram=127.0.0.1:PORT, FileDescriptorName=, ReceiveBuffer=) and
// corral@api running two workers of examples/udp-echo. The first datagram
// starts the service and is answered; then 20 `systemctl reload`s while a
// client sends 5,000 numbered datagrams a second lose none.
func TestDatagramSocketUnit(t *testing.T) {
	m := startManager(t)
	echo := buildUDPEcho(t)
	a := installApp(t, m, appOptions{instances: 2, command: []string{echo}, unix: true})
	addr := testenv.FreeUDPAddr(t)
	testenv.WriteFile(t, filepath.Join(m.unitDir, a.socket()+".d", "udp.conf"),
		"[Socket]\nListenStream=\nListenDatagram="+addr+"\nFileDescriptorName=dns\nReceiveBuffer=8M\n")
	m.mustSystemctl(t, "daemon-reload")
	m.mustSystemctl(t, "start", a.socket())

	if got, err := testenv.AskUDP(addr, "first"); err != nil || !strings.HasPrefix(got, "first from worker ") {
		t.Fatalf("the datagram that started the service: answer %q, %v", got, err)
	}
	waitActive(t, m, a.service())
	log := filepath.Join(m.dir, a.service()+".log")
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "socket udp:"+addr+" (dns) goes to every worker; receive buffer 16777216 bytes") {
		t.Errorf("corral's log does not show the socket with ReceiveBuffer=8M (16777216 as the kernel reports it):\n%s", b)
	}

	prev := a.status(t)
	d, err := loadtest.DatagramOptions{Addr: addr, Rate: 5000}.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	var took []time.Duration
	for i := 1; i <= 20; i++ {
		start := time.Now()
		m.mustSystemctl(t, "reload", a.service())
		took = append(took, time.Since(start))
		st := a.status(t)
		checkGeneration(t, st, 2, prev.Generation+1)
		prev = st
	}
	// The old generation's workers drain; the load covers their exit, and
	// reaches the last generation.
	testenv.WaitFor(t, 30*time.Second, "the last old workers to exit", func() bool { return len(a.status(t).Workers) == 2 })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	last := workerPIDs(a.status(t))
	if c, err := d.Wait(ctx, func(c loadtest.DatagramCounts) bool {
		for pid := range last {
			if c.ByPID[pid] == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("the last generation %v answered nothing: %v; answers by PID %v", last, err, c.ByPID)
	}
	r, err := d.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("20 systemctl reloads (%s): %d datagrams sent in %v (%.0f/s), %d answered, %d lost (the kernel dropped %d at the workers' buffer, %d at the client's), %d duplicated; max wait %v; answered by %d workers",
		spread(took), r.Sent, r.Elapsed.Round(time.Millisecond), r.Rate(), r.Answered, r.Lost, r.Dropped, r.ClientDropped, r.Duplicated, r.MaxLatency.Round(time.Microsecond), len(r.ByPID))
	if r.Lost != 0 || r.Duplicated != 0 || r.Stray != 0 || r.Sent < 1000 || len(r.ByPID) < 21 {
		t.Errorf("%d sent, %d lost (the first: %v), %d duplicated, %d stray, answered by %d workers; want none lost or duplicated, answers from 21 of the 42 workers at least",
			r.Sent, r.Lost, r.LostSeqs, r.Duplicated, r.Stray, len(r.ByPID))
	}
}

// TestRefusedSocketUnits: a socket unit that passes what corral does not
// hand to workers (Accept=yes, ListenFIFO=, ListenSpecial=) fails the
// service with exit status 2, which systemd does not restart, a log line
// that names the setting, and no worker started.
func TestRefusedSocketUnits(t *testing.T) {
	for _, tc := range []struct {
		name, socket, setting string
	}{
		{"fifo", "ListenFIFO=%t/corral/api.fifo", "ListenFIFO="},
		// systemd watches the file with epoll, which /dev/null and
		// /dev/urandom refuse; a pseudo-terminal master takes it.
		{"special file", "ListenSpecial=/dev/ptmx", "ListenSpecial="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startManager(t)
			a := installApp(t, m, appOptions{instances: 2, unix: true})
			testenv.WriteFile(t, filepath.Join(m.unitDir, a.socket()+".d", "kind.conf"), "[Socket]\nListenStream=\n"+tc.socket+"\n")
			m.mustSystemctl(t, "daemon-reload")
			if out, err := m.systemctl("start", a.service()); err == nil {
				t.Fatalf("systemctl start succeeded: %s", out)
			}
			checkRefused(t, m, a.service(), filepath.Join(m.dir, a.service()+".log"), tc.setting)
		})
	}
	t.Run("Accept=yes", func(t *testing.T) {
		// The shipped units cannot take Accept=yes: the per-connection
		// instance corral@N-LOCAL-REMOTE.service requires its own
		// corral@N-LOCAL-REMOTE.socket, which systemd refuses. So this
		// socket unit starts a template service of its own, which runs
		// corral as the shipped one does, with a config named after the
		// instance, which no one wrote.
		m := startManager(t)
		corral, _ := buildBinaries(t)
		addr := testenv.FreeAddr(t)
		log := filepath.Join(m.dir, "accept.log")
		testenv.WriteFile(t, filepath.Join(m.unitDir, "corral-accept.socket"), "[Socket]\nListenStream="+addr+"\nAccept=yes\n")
		testenv.WriteFile(t, filepath.Join(m.unitDir, "corral-accept@.service"), "[Service]\nType=notify\nNotifyAccess=main\n"+
			"ExecStart="+corral+" run --config "+m.etc+"/%i.toml\nEnvironment=CORRAL_UNIT=%n\nRuntimeDirectory=corral-accept/%i\n"+
			"RestartPreventExitStatus=2\nStandardOutput=append:"+log+"\nStandardError=append:"+log+"\n")
		m.mustSystemctl(t, "daemon-reload")
		m.mustSystemctl(t, "start", "corral-accept.socket")
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var unit string
		testenv.WaitFor(t, 30*time.Second, "the per-connection service to fail", func() bool {
			out, _ := m.systemctl("list-units", "--all", "--plain", "--no-legend", "--state=failed", "corral-accept@*.service")
			if f := strings.Fields(out); len(f) > 0 {
				unit = f[0]
			}
			return unit != ""
		})
		t.Logf("Accept=yes started %s", unit)
		checkRefused(t, m, unit, log, "Accept=yes")
	})
}

// checkRefused checks that unit failed as corral does on a refused kind.
func checkRefused(t *testing.T, m *manager, unit, log, setting string) {
	t.Helper()
	p := m.show(t, unit, "Result", "ExecMainStatus", "NRestarts", "ActiveState")
	if p["ExecMainStatus"] != "2" || p["Result"] != "exit-code" || p["NRestarts"] != "0" {
		t.Errorf("%s: %v; want exit status 2, result exit-code, no restart", unit, p)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "sockets from systemd: inherited fd 3") || !strings.Contains(string(b), setting+" in the socket unit") {
		t.Errorf("%s's output does not name %s:\n%s", unit, setting, b)
	}
	if strings.Contains(string(b), "starting ") {
		t.Errorf("%s started workers:\n%s", unit, b)
	}
	t.Logf("%s: %s", unit, strings.TrimSpace(string(b)))
}
