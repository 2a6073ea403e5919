package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzLoad writes any text as a config file and loads and validates it as
// `corral run --config` does. It never panics; every error is one line, and
// names the file (Load) or the setting that is wrong (Validate); a config
// that passes both is one corral can run: every string that reaches
// execve(2) can, every value has its documented range. The seed corpus is
// testdata/fuzz/FuzzLoad: the README's and the packaged example's configs,
// and broken ones.
func FuzzLoad(f *testing.F) {
	path := filepath.Join(f.TempDir(), "app.toml")
	f.Fuzz(func(t *testing.T, text []byte) {
		if err := os.WriteFile(path, text, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, path) || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("Load(%q) error %q: want one line naming the file", text, msg)
			}
			return
		}
		if err := c.Validate(); err != nil {
			checkValidateError(t, text, err)
			return
		}
		checkRunnable(t, text, c)
	})
}

// settingNames are how Validate's errors begin: the setting's name.
var settingNames = []string{"no command to run", "instances ", "ready ", "ipc ", "ready timeout ", "stop timeout ",
	"max surge ", "reload failure ", "stop signal", "environment ", "command ", "working directory ", "receive buffer "}

func checkValidateError(t *testing.T, text []byte, err error) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("config %q: Validate error %q is not one line", text, msg)
	}
	for _, name := range settingNames {
		if strings.HasPrefix(msg, name) {
			return
		}
	}
	t.Fatalf("config %q: Validate error %q names no setting", text, msg)
}

// checkRunnable checks a config that Load and Validate accepted.
func checkRunnable(t *testing.T, text []byte, c Config) {
	t.Helper()
	fail := func(what string, v any) { t.Fatalf("config %q passed Validate with %s %q", text, what, v) }
	if len(c.Command) == 0 || c.Command[0] == "" {
		fail("command", c.Command)
	}
	for _, arg := range c.Command {
		if strings.IndexByte(arg, 0) >= 0 {
			fail("a NUL byte, which execve cannot pass, in command", c.Command)
		}
	}
	for k, v := range c.Environment {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			fail("environment variable", k+"="+v)
		}
	}
	if strings.IndexByte(c.WorkingDirectory, 0) >= 0 {
		fail("working_directory", c.WorkingDirectory)
	}
	if m := c.ReadyMode(); m != "notify" && m != "listen" && m != "exec" {
		fail("ready mode", m)
	}
	if c.ReadyTimeout <= 0 || c.StopTimeout <= 0 || c.MaxSurge < 1 {
		fail("timeouts or max_surge", []any{c.ReadyTimeout, c.StopTimeout, c.MaxSurge})
	}
	if n := c.ReceiveBuffer.Bytes(); n < 0 || n > 512<<20 {
		fail("receive_buffer", &c.ReceiveBuffer)
	}
	if unix.SignalName(unix.Signal(c.StopSignal)) == "" {
		fail("stop_signal", c.StopSignal)
	}
	for _, cpus := range []int{1, 2, 64} {
		if n := c.Instances.Resolve(cpus); n < 1 {
			fail("instances resolving to fewer than 1", n)
		}
	}
	if d := c.Describe(c.Instances.Resolve(2)); strings.ContainsAny(d, "\n\r") {
		fail("a description of more than one line", d)
	}
	for _, kv := range c.Env([]string{"PATH=/usr/bin"}) {
		if !strings.Contains(kv, "=") {
			fail("an environment entry without '='", kv)
		}
	}
}
