package systemd_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// BenchmarkReload times `systemctl reload` of the shipped unit (2 workers
// of hello, under load: 4 clients on new connections, 4 keep-alive) against
// the same unit with the ExecReload= it had before the "+", which ran
// corral reload inside the service's sandbox, and against corral reload
// run directly on the control socket, corral's own path. corral-ms/op is
// corral's rolling replacement itself, as its status reports it. Each
// reload must replace every worker and no request may fail.
//
//	sudo go test -run '^$' -bench Reload -benchtime 20x ./contrib/systemd/
//
// On 2 shared cores (Debian 12, systemd 252, user manager as root), three
// runs: the shipped unit 99 to 113 ms a reload, the sandboxed ExecReload=
// 160 to 228 ms, corral reload directly 71 to 91 ms; corral's part 39 to
// 66 ms in each. (A booted Debian, where DynamicUser= applies too, shows a
// larger gap: see the README's "How long a reload takes".)
func BenchmarkReload(b *testing.B) {
	for _, v := range []struct {
		name      string
		sandboxed bool // ExecReload= without "+"
		direct    bool // corral reload, not systemctl
	}{
		{name: "shipped"},
		{name: "sandboxed", sandboxed: true},
		{name: "direct", direct: true},
	} {
		b.Run(v.name, func(b *testing.B) {
			m := startManager(b)
			corral, _ := buildBinaries(b)
			a := installApp(b, m, appOptions{instances: 2})
			if v.sandboxed {
				testenv.WriteFile(b, filepath.Join(m.unitDir, a.service()+".d", "sandboxed.conf"),
					"[Service]\nExecReload=\nExecReload="+corral+" reload --config "+a.config+"\n")
				m.mustSystemctl(b, "daemon-reload")
			}
			m.mustSystemctl(b, "start", a.service())
			waitActive(b, m, a.service())
			gen := a.status(b).Generation
			load := startLoad(b, a)
			var inCorral time.Duration
			for b.Loop() {
				if v.direct {
					cmd := exec.Command(corral, "reload", "--control", a.control())
					cmd.Env = cleanEnv()
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("corral reload: %v\n%s", err, out)
					}
				} else {
					m.mustSystemctl(b, "reload", a.service())
				}
				b.StopTimer()
				st := a.status(b)
				gen++
				checkGeneration(b, st, 2, gen)
				inCorral += st.LastReload.Duration
				b.StartTimer()
			}
			ok, failed, errs := load.stop()
			if failed > 0 || ok == 0 {
				b.Errorf("%d reloads: %d requests ok, %d failed: %v", b.N, ok, failed, errs)
			}
			b.ReportMetric(float64(inCorral.Microseconds())/1000/float64(b.N), "corral-ms/op")
		})
	}
}

// TestReloadAsksOnlyCorral: ExecReload=+ runs corral reload as root, and the
// service's user owns the directory of the control socket. An app that
// puts a symlink to another socket there gets a failed `systemctl reload`
// that names both processes, and the socket it points to gets no request.
func TestReloadAsksOnlyCorral(t *testing.T) {
	m := startManager(t)
	a := installApp(t, m, appOptions{instances: 2})
	m.mustSystemctl(t, "start", a.service())
	mainPID := waitActive(t, m, a.service())["MainPID"]

	other := filepath.Join(m.dir, "other.sock")
	ln, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Minute))
		b, err := io.ReadAll(c) // until corral reload closes its end
		if err != nil {
			got <- "read: " + err.Error()
			return
		}
		got <- fmt.Sprintf("%q", b)
	}()

	real := a.control() + ".real"
	if err := os.Rename(a.control(), real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, a.control()); err != nil {
		t.Fatal(err)
	}
	out, err := m.systemctl("reload", a.service())
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("systemctl reload with the control socket a symlink to another socket: %v, want it to fail\n%s", err, out)
	}
	if b := <-got; b != `""` {
		t.Errorf("the other socket received %s, want nothing", b)
	}
	log, _ := os.ReadFile(filepath.Join(m.dir, a.service()+".log"))
	want := fmt.Sprintf("served by PID %d (uid 0), not by the service's main process, PID %s ($MAINPID)", os.Getpid(), mainPID)
	if !strings.Contains(string(log), want) {
		t.Errorf("the service's log does not say %q:\n%s", want, log)
	}

	if err := os.Rename(real, a.control()); err != nil {
		t.Fatal(err)
	}
	before := a.status(t).Generation
	m.mustSystemctl(t, "reload", a.service())
	checkGeneration(t, a.status(t), 2, before+1)
}
