package notify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSystemd binds a unixgram socket, as systemd does for a service, and
// points NOTIFY_SOCKET at it for the rest of the test.
func fakeSystemd(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "systemd-notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// readDatagram returns the next datagram the fake systemd received.
func readDatagram(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, maxPayload+1)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("fake systemd: %v", err)
	}
	return string(buf[:n])
}

func TestUpstreamSends(t *testing.T) {
	tests := []struct {
		name string
		call func(u *Upstream) error
		want string // exact datagram, or a regexp if it starts with ^
	}{
		{"ready", func(u *Upstream) error { return u.Ready("serving 4 workers") }, "READY=1\nSTATUS=serving 4 workers"},
		{"ready no status", func(u *Upstream) error { return u.Ready("") }, "READY=1"},
		{"reloading", func(u *Upstream) error { return u.Reloading("reloading") }, `^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*\nSTATUS=reloading$`},
		{"stopping", func(u *Upstream) error { return u.Stopping("draining") }, "STOPPING=1\nSTATUS=draining"},
		{"status", func(u *Upstream) error { return u.Status("a=b") }, "STATUS=a=b"},
		{"status cleaned", func(u *Upstream) error { return u.Status("two\nREADY=1\x00") }, "STATUS=two READY=1"},
		{"status CR cleaned", func(u *Upstream) error { return u.Status("two\rMAINPID=1") }, "STATUS=two MAINPID=1"},
		{"watchdog", func(u *Upstream) error { return u.Watchdog() }, "WATCHDOG=1"},
		{"extend", func(u *Upstream) error { return u.ExtendTimeout(3 * time.Second) }, "EXTEND_TIMEOUT_USEC=3000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			systemd := fakeSystemd(t)
			u := NewUpstream()
			if !u.Enabled() {
				t.Fatal("Enabled = false with NOTIFY_SOCKET set")
			}
			if err := tt.call(u); err != nil {
				t.Fatal(err)
			}
			got := readDatagram(t, systemd) // the first datagram holds everything
			if strings.HasPrefix(tt.want, "^") {
				if !regexp.MustCompile(tt.want).MatchString(got) {
					t.Errorf("sent %q, want a match for %s", got, tt.want)
				}
			} else if got != tt.want {
				t.Errorf("sent %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUpstreamDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET") // t.Setenv restores it afterwards
	for _, u := range []*Upstream{NewUpstream(), nil} {
		if u.Enabled() {
			t.Error("Enabled = true without NOTIFY_SOCKET")
		}
		for i, err := range []error{
			u.Ready("x"), u.Status("x"), u.Reloading("x"), u.Stopping("x"),
			u.Watchdog(), u.ExtendTimeout(time.Second),
		} {
			if err != nil {
				t.Errorf("method %d = %v, want nil", i, err)
			}
		}
	}
}

func TestUpstreamErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing"))
	u := NewUpstream()
	if err := u.Ready("x"); !errors.Is(err, syscall.ENOENT) || !strings.HasPrefix(err.Error(), "send READY to service manager: ") {
		t.Errorf("Ready to a missing socket = %v, want a wrapped ENOENT", err)
	}
	os.Unsetenv("NOTIFY_SOCKET")
	if err := u.Watchdog(); !errors.Is(err, errUnset) {
		t.Errorf("Watchdog after unsetting NOTIFY_SOCKET = %v, want errUnset", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	tests := []struct {
		name, usec, pid string
		want            time.Duration
	}{
		{"this pid", "2000000", strconv.Itoa(os.Getpid()), time.Second},
		{"no pid", "2000000", "", time.Second},
		{"other pid", "2000000", strconv.Itoa(os.Getpid() + 1), 0},
		{"unset", "", "", 0},
		{"malformed", "soon", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			if got := NewUpstream().WatchdogInterval(); got != tt.want {
				t.Errorf("WatchdogInterval = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCleanStatus(t *testing.T) {
	long := strings.Repeat("é", maxStatus) // 2 bytes each
	got := cleanStatus(long)
	if len(got) > maxStatus || !strings.HasPrefix(long, got) || len(got) < maxStatus-1 {
		t.Errorf("cleanStatus cut %d bytes to %d, want at most %d on a rune boundary", len(long), len(got), maxStatus)
	}
	if got := cleanStatus("a\xffb"); got != "a\uFFFDb" {
		t.Errorf("cleanStatus(invalid UTF-8) = %q", got)
	}
}
