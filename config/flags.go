package config

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// BindFlags defines on fs the flags that set the fields of c. Their
// defaults are c's current values, so bind to a Default().
func BindFlags(fs *pflag.FlagSet, c *Config) {
	fs.VarP(&c.Instances, "instances", "i",
		"workers to run: N, max or 0 for one per available CPU, -K for CPUs minus K")
	fs.StringArrayVarP(&c.Listen, "listen", "l", nil,
		"socket to open when systemd passed none: [NAME=]HOST:PORT, [NAME=]:PORT, [NAME=][::1]:PORT or [NAME=]unix:/PATH (repeatable)")
	fs.StringVar(&c.Ready, "ready", c.Ready,
		"when a new worker counts as online: auto (listen for Node workers, as PM2 without wait_ready; notify for others), notify (it sends READY=1 or \"online\" to $NOTIFY_SOCKET, or Node's process.send('ready')), listen (it waits for connections on one of the sockets, for apps that never notify) or exec (as soon as it runs)")
	fs.StringVar(&c.IPC, "ipc", c.IPC,
		"Node's IPC channel for the workers (process.send('ready'), the 'shutdown' message): auto (for node and nodejs commands), node or none")
	fs.Var(&c.ReadyTimeout, "ready-timeout", "how long a new worker may take to come online before it counts as failed")
	fs.Var(&c.StopTimeout, "stop-timeout", "how long a worker may drain after the stop signal before SIGKILL")
	fs.Var(&c.StopSignal, "stop-signal", "signal that asks a worker to drain and exit")
	fs.IntVar(&c.MaxSurge, "max-surge", c.MaxSurge, "extra workers a reload may start at once (more is faster and uses more memory)")
	fs.StringVar(&c.ReloadFailure, "reload-failure", c.ReloadFailure,
		"when a new worker fails during a reload: keep-old (abort; the old workers keep serving) or proceed (replace anyway, as PM2 does)")
	fs.StringToStringVarP(&c.Environment, "env", "e", nil, "set an environment variable for the workers: KEY=VALUE (repeatable)")
	fs.StringVarP(&c.WorkingDirectory, "chdir", "C", "", "working directory of the workers (default: corral's)")
}

// Overlay copies into dst every setting whose flag was given on fs, read
// from src, the Config that BindFlags bound. Environment variables given
// with --env are added to dst's.
func Overlay(dst *Config, src *Config, fs *pflag.FlagSet) {
	set := func(name string) bool { return fs.Changed(name) }
	if set("instances") {
		dst.Instances = src.Instances
	}
	if set("listen") {
		dst.Listen = src.Listen
	}
	if set("ready") {
		dst.Ready = src.Ready
	}
	if set("ipc") {
		dst.IPC = src.IPC
	}
	if set("ready-timeout") {
		dst.ReadyTimeout = src.ReadyTimeout
	}
	if set("stop-timeout") {
		dst.StopTimeout = src.StopTimeout
	}
	if set("stop-signal") {
		dst.StopSignal = src.StopSignal
	}
	if set("max-surge") {
		dst.MaxSurge = src.MaxSurge
	}
	if set("reload-failure") {
		dst.ReloadFailure = src.ReloadFailure
	}
	if set("chdir") {
		dst.WorkingDirectory = src.WorkingDirectory
	}
	if set("env") {
		if dst.Environment == nil {
			dst.Environment = map[string]string{}
		}
		for k, v := range src.Environment {
			dst.Environment[k] = v
		}
	}
}

// Describe returns the settings as one line, for the log at start and
// after a reload.
func (c *Config) Describe(instances int) string {
	return fmt.Sprintf("command %q, %d instances, ready=%s, ready timeout %v, stop %v then SIGKILL after %v, max surge %d, reload failure %s",
		strings.Join(c.Command, " "), instances, c.ReadyMode(), &c.ReadyTimeout, &c.StopSignal, &c.StopTimeout, c.MaxSurge, c.ReloadFailure)
}
