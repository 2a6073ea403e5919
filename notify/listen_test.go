package notify

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenMode(t *testing.T) {
	s := listen(t)
	fi, err := os.Lstat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want a socket with mode 0600", fi.Mode())
	}
}

func TestCloseUnlinks(t *testing.T) {
	s := listen(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Close, Lstat(%s) = %v, want not exist", s.Path(), err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCloseLeavesReplacedSocket(t *testing.T) {
	s := listen(t)
	if err := os.Remove(s.Path()); err != nil {
		t.Fatal(err)
	}
	other := bindPlain(t, s.Path())
	defer other.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.Path()); err != nil {
		t.Errorf("Close removed a socket it did not create: %v", err)
	}
}

func TestListenOverStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	bindPlain(t, path).Close() // a unixgram conn leaves its file behind
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("setup: no stale socket file: %v", err)
	}
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ch := serve(t, s)
	send(t, dial(t, path), "READY=1")
	if m := receive(t, ch); !m.Ready {
		t.Errorf("got %+v, want Ready", m)
	}
}

func TestListenRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "regular")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live.sock")
	defer bindPlain(t, live).Close()
	tests := []struct {
		name, path, want string
	}{
		{name: "regular file", path: file, want: file + ": path exists and is not a socket"},
		{name: "live socket", path: live, want: live + ": socket is in use"},
		{name: "abstract", path: "@corral", want: "not an empty or abstract name"},
		{name: "empty", path: "", want: "not an empty or abstract name"},
		{name: "too long", path: filepath.Join(dir, strings.Repeat("n", 120)), want: "at most 107"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Listen(tt.path)
			if err == nil {
				s.Close()
				t.Fatalf("Listen(%q) succeeded", tt.path)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Listen(%q) = %q, want it to contain %q", tt.path, err, tt.want)
			}
		})
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
}

func TestListenRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s, err := Listen("notify.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !filepath.IsAbs(s.Path()) || filepath.Base(s.Path()) != "notify.sock" {
		t.Errorf("Path = %q, want an absolute path to notify.sock", s.Path())
	}
	if _, err := os.Lstat(filepath.Join(dir, "notify.sock")); err != nil {
		t.Errorf("socket not created in the working directory: %v", err)
	}
}

// bindPlain binds a unixgram socket at path without this package.
func bindPlain(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
