package activation

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// journalPathEnv tells helperJournal where the test's stand-in for
// journald's stream socket is.
const journalPathEnv = "CORRAL_TEST_JOURNAL"

// helperJournal connects its stdout and stderr to the stream socket at
// $CORRAL_TEST_JOURNAL as the trampoline does, then prints a line on each
// and its JOURNAL_STREAM and fd 1's device and inode.
func helperJournal(w io.Writer) error {
	if err := connectJournal(os.Getenv(journalPathEnv), "api/1"); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(1, &st); err != nil {
		return err
	}
	fmt.Printf("<3>stdout %s %d:%d\n", os.Getenv("JOURNAL_STREAM"), st.Dev, st.Ino)
	fmt.Fprintln(os.Stderr, "stderr line")
	return nil
}

// connectJournal speaks journald's stream protocol: the header that
// sd_journal_stream_fd(3) writes, from the connecting process itself
// (journald takes its PID from the connection), then the lines, stdout's
// and stderr's on the one stream, and JOURNAL_STREAM names it.
func TestConnectJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdout")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(testTimeout))

	c := launchChild(t, &Worker{Path: testBinary(t), Env: childEnv(helperEnv+"=journal", journalPathEnv+"="+path)})
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testTimeout))
	raw, _ := conn.SyscallConn()
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || int(cred.Pid) != c.pid {
		t.Errorf("the stream's peer is %+v (%v), want the worker, pid %d", cred, err, c.pid)
	}
	lines, _ := io.ReadAll(bufio.NewReader(conn))
	if err := c.wait(); err != nil {
		t.Fatalf("helper: %v; stderr:\n%s", err, &c.stderr)
	}
	got := strings.Split(strings.TrimSuffix(string(lines), "\n"), "\n")
	header := []string{"api/1", "", "6", "1", "0", "0", "0"}
	if len(got) != len(header)+2 || strings.Join(got[:len(header)], "\n") != strings.Join(header, "\n") {
		t.Fatalf("the stream carried %q, want the header %q and two lines", got, header)
	}
	f := strings.Fields(got[len(header)])
	if len(f) != 3 || f[0] != "<3>stdout" || f[1] != f[2] || !strings.Contains(f[1], ":") {
		t.Errorf("stdout line %q: want <3>stdout and JOURNAL_STREAM equal to fd 1's device:inode", got[len(header)])
	}
	if got[len(header)+1] != "stderr line" {
		t.Errorf("stderr line %q", got[len(header)+1])
	}
}

// Where the journal cannot be reached the worker keeps its output and runs.
func TestConnectJournalMissing(t *testing.T) {
	err := connectJournal(filepath.Join(t.TempDir(), "none"), "api/0")
	if err == nil || !strings.Contains(err.Error(), "connect to") {
		t.Errorf("connectJournal to no socket = %v, want a connect error", err)
	}
}
