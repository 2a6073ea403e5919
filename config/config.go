// Package config loads and checks corral's settings: defaults, then a TOML
// file, then command-line flags, in that order. It is the one place that
// knows every setting's name, default and rules, so `corral run` and a
// reload read settings the same way. Each setting is declared once, as a
// field of Config whose tags give its key and its flag; the list of known
// keys, the flags and the overlay of flags on a file are read from them.
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
)

// Config is every setting of an app run by corral, each declared once here:
// its key in the config file (toml), and its flag (flag, short, help) unless
// it has none. Load, the unknown-key check, BindFlags, Overlay and Settings
// all read these tags; Default holds the defaults and Validate the rules.
type Config struct {
	// Command has no flag: it is what follows -- on the command line.
	Command []string `toml:"command"`

	Instances Instances `toml:"instances" flag:"instances" short:"i" help:"workers to run: N, max or 0 for one per available CPU, -K for CPUs minus K"`
	Listen    []string  `toml:"listen" flag:"listen" short:"l" help:"socket to open when systemd passed none: [NAME=]HOST:PORT, [NAME=]:PORT, [NAME=][::1]:PORT (TCP; tcp:HOST:PORT too), [NAME=]udp:HOST:PORT, [NAME=]unix:/PATH, [NAME=]unixgram:/PATH or [NAME=]unixpacket:/PATH (repeatable)"`
	// ReceiveBuffer, like Listen, applies to the sockets corral opens,
	// when it starts.
	ReceiveBuffer Size   `toml:"receive_buffer" flag:"receive-buffer" help:"receive buffer of each UDP socket corral opens, which holds the datagrams no worker has read yet: bytes, or 512K, 4M (default: the kernel's, net.core.rmem_default; above net.core.rmem_max needs CAP_NET_ADMIN)"`
	Ready         string `toml:"ready" flag:"ready" help:"when a new worker counts as online: auto (listen for Node workers, as PM2 without wait_ready; notify for others), notify (it sends READY=1 or \"online\" to $NOTIFY_SOCKET, or Node's process.send('ready')), listen (it waits for connections on one of the sockets, for apps that never notify) or exec (as soon as it runs)"`
	IPC           string `toml:"ipc" flag:"ipc" help:"Node's IPC channel for the workers (process.send('ready'), the 'shutdown' message): auto (for node and nodejs commands), node or none"`

	ReadyTimeout  Duration `toml:"ready_timeout" flag:"ready-timeout" help:"how long a new worker may take to come online before it counts as failed"`
	StopTimeout   Duration `toml:"stop_timeout" flag:"stop-timeout" help:"how long a worker may drain after the stop signal before SIGKILL"`
	StopSignal    Signal   `toml:"stop_signal" flag:"stop-signal" help:"signal that asks a worker to drain and exit"`
	MaxSurge      int      `toml:"max_surge" flag:"max-surge" help:"extra workers a reload may start at once (more is faster and uses more memory)"`
	ReloadFailure string   `toml:"reload_failure" flag:"reload-failure" help:"when a new worker fails during a reload: keep-old (abort; the old workers keep serving) or proceed (replace anyway, as PM2 does)"`

	MaxMemory   Size `toml:"max_memory" flag:"max-memory" help:"recycle a worker whose memory (its processes together) goes above this, such as 300M: a replacement starts in its slot and comes online first, then the old one drains (PM2's max_memory_restart); unset: never"`
	MemoryLimit Size `toml:"memory_limit" flag:"memory-limit" help:"hard memory limit of each worker (its cgroup's memory.max), such as 512M: the kernel's OOM killer stops a worker that goes above it, and corral restarts it; needs the memory controller delegated to corral (cgroup v2 under the shipped unit)"`

	// Environment given with --env is added to the file's, not put in
	// its place.
	Environment      map[string]string `toml:"environment" flag:"env" short:"e" help:"set an environment variable for the workers: KEY=VALUE (repeatable)"`
	WorkingDirectory string            `toml:"working_directory" flag:"chdir" short:"C" help:"working directory of the workers (default: corral's)"`
}

// maxReceiveBuffer bounds receive_buffer: the kernel takes at most
// INT_MAX / 2 for a socket buffer, and reports twice what it takes.
const maxReceiveBuffer = 512 << 20

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
// So is a path that is not a regular file: a named pipe would block the
// read until something writes to it, and corral reads its config again at
// every reload.
func Load(path string) (Config, error) {
	c := Default()
	b, err := readFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, oneLine{err})
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

// readFile reads the regular file at path. It opens it without blocking,
// which a named pipe would do, and looks at what it opened before reading.
func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file but %s; give the path of a file", path, fileKind(fi.Mode()))
	}
	return io.ReadAll(f)
}

// fileKind names the type of a file that is not a regular one.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// oneLine is err with its line breaks escaped, so that it prints as one
// line: the TOML decoder quotes some input, a newline too, as it is.
type oneLine struct{ err error }

func (e oneLine) Error() string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(e.err.Error())
}

func (e oneLine) Unwrap() error { return e.err }

// Validate reports the first setting that is wrong, by its name, with the
// fix. It is the one place that checks values: what it accepts, the
// workers can run. It does not look at the file system.
func (c *Config) Validate() error {
	instancesErr := c.Instances.check()
	switch {
	case len(c.Command) == 0 || c.Command[0] == "":
		return errors.New("no command to run: put it after -- (corral run --listen :8080 -- node server.js) or set command = [\"node\", \"server.js\"] in the config file")
	case instancesErr != nil:
		return instancesErr
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
	case c.MaxMemory.Bytes() > 0 && c.MemoryLimit.Bytes() > 0 && c.MaxMemory.Bytes() >= c.MemoryLimit.Bytes():
		return fmt.Errorf("max_memory %s is not below memory_limit %s: a worker would be killed by the OOM killer before it is recycled; lower max_memory (300M for a 512M limit, say) or raise memory_limit", &c.MaxMemory, &c.MemoryLimit)
	case c.ReceiveBuffer.Bytes() > maxReceiveBuffer:
		return fmt.Errorf("receive buffer %s: want at most 512M (the kernel caps a socket's buffer at 1G, twice what is asked)", &c.ReceiveBuffer)
	}
	for i, arg := range c.Command {
		if strings.IndexByte(arg, 0) >= 0 {
			return fmt.Errorf("command %q: word %d holds a NUL byte, which no program can be passed; remove it", c.Command, i+1)
		}
	}
	for k, v := range c.Environment {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("environment %q: a variable name must be non-empty and hold no '=' or NUL", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("environment %q: the value %q holds a NUL byte, which no program can be passed; remove it", k, v)
		}
	}
	if strings.IndexByte(c.WorkingDirectory, 0) >= 0 {
		return fmt.Errorf("working directory %q: a path cannot hold a NUL byte", c.WorkingDirectory)
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
