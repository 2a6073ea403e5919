// Package config loads and checks corral's settings: defaults, then a TOML
// file, then command-line flags, in that order. It is the one place that
// knows every setting's name, default and rules, so `corral run` and a
// reload read settings the same way.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
)

// Config is every setting of an app run by corral.
type Config struct {
	Command          []string          `toml:"command"`
	Instances        Instances         `toml:"instances"`
	Listen           []string          `toml:"listen"`
	Ready            string            `toml:"ready"`
	IPC              string            `toml:"ipc"`
	ReadyTimeout     Duration          `toml:"ready_timeout"`
	StopTimeout      Duration          `toml:"stop_timeout"`
	StopSignal       Signal            `toml:"stop_signal"`
	MaxSurge         int               `toml:"max_surge"`
	ReloadFailure    string            `toml:"reload_failure"`
	Environment      map[string]string `toml:"environment"`
	WorkingDirectory string            `toml:"working_directory"`
}

// Default returns the settings corral uses when neither a file nor a flag
// sets them.
func Default() Config {
	return Config{
		Instances:     Instances{raw: "max"},
		Ready:         "auto",
		IPC:           "auto",
		ReadyTimeout:  Duration(30 * time.Second),
		StopTimeout:   Duration(30 * time.Second),
		StopSignal:    Signal(unix.SIGTERM),
		MaxSurge:      1,
		ReloadFailure: "keep-old",
	}
}

// Load returns Default overlaid with the TOML file at path. A setting the
// file does not know is an error, so that a typo never passes silently.
func Load(path string) (Config, error) {
	c := Default()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		keys := make([]string, len(u))
		for i, k := range u {
			keys[i] = k.String()
		}
		return c, fmt.Errorf("config %s: unknown setting %s (known: %s)", path,
			strings.Join(keys, ", "), strings.Join(knownKeys(), ", "))
	}
	return c, nil
}

func knownKeys() []string {
	return []string{"command", "instances", "listen", "ready", "ipc", "ready_timeout", "stop_timeout",
		"stop_signal", "max_surge", "reload_failure", "environment", "working_directory"}
}

// Validate reports the first setting that is wrong, by its name, with the
// fix. It does not look at the file system.
func (c *Config) Validate() error {
	switch {
	case len(c.Command) == 0 || c.Command[0] == "":
		return errors.New("no command to run: put it after -- (corral run --listen :8080 -- node server.js) or set command = [\"node\", \"server.js\"] in the config file")
	case c.Ready != "auto" && c.Ready != "notify" && c.Ready != "listen" && c.Ready != "exec":
		return fmt.Errorf("ready %q: want auto, notify (the worker sends READY=1), listen (it waits for connections on a socket) or exec (online as soon as it runs)", c.Ready)
	case c.IPC != "auto" && c.IPC != "node" && c.IPC != "none":
		return fmt.Errorf("ipc %q: want auto (node for node and nodejs commands), node or none", c.IPC)
	case c.ReadyTimeout <= 0:
		return fmt.Errorf("ready timeout %v: want a positive duration such as 30s", time.Duration(c.ReadyTimeout))
	case c.StopTimeout <= 0:
		return fmt.Errorf("stop timeout %v: want a positive duration such as 30s", time.Duration(c.StopTimeout))
	case c.MaxSurge < 1:
		return fmt.Errorf("max surge %d: want 1 or more extra workers during a reload", c.MaxSurge)
	case c.ReloadFailure != "keep-old" && c.ReloadFailure != "proceed":
		return fmt.Errorf("reload failure %q: want keep-old (abort, old workers keep serving) or proceed (PM2's behaviour)", c.ReloadFailure)
	case c.StopSignal == 0:
		return errors.New("stop signal: none set; want a signal such as SIGTERM")
	}
	for k := range c.Environment {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("environment %q: a variable name must be non-empty and hold no '=' or NUL", k)
		}
	}
	return nil
}

// Env returns base with the configured environment added, in a stable
// order; configured values win.
func (c *Config) Env(base []string) []string {
	keys := make([]string, 0, len(c.Environment))
	for k := range c.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(base)+len(keys))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, set := c.Environment[k]; !set {
			env = append(env, kv)
		}
	}
	for _, k := range keys {
		env = append(env, k+"="+c.Environment[k])
	}
	return env
}

// NodeIPC reports whether the workers get Node's IPC channel: ipc = "node",
// or "auto" with a command named node or nodejs.
func (c *Config) NodeIPC() bool {
	switch c.IPC {
	case "node":
		return true
	case "auto":
		base := filepath.Base(c.Command[0])
		return base == "node" || base == "nodejs"
	}
	return false
}

// ReadyMode resolves ready = "auto": for Node workers (see NodeIPC),
// "listen", as PM2 counts a worker online at its 'listening' event unless
// told to wait_ready (process.send('ready') still counts if it comes
// first); for every other command "notify".
func (c *Config) ReadyMode() string {
	if c.Ready != "auto" {
		return c.Ready
	}
	if c.NodeIPC() {
		return "listen"
	}
	return "notify"
}
