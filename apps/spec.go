package apps

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/config"
)

// Spec is an app as Start runs it.
type Spec struct {
	// Name is the app's name, the units' instance. See CheckName.
	Name string
	// Template is the units' template; default DefaultTemplate.
	Template string
	// Config is what `corral run --config` reads. Its Listen is not
	// written: the socket unit listens. Its command's program is an
	// absolute path (see Command), since the manager's $PATH is not the
	// caller's.
	Config config.Config
	// Listen are the socket unit's ListenStream= values (see
	// ListenStream), at least one.
	Listen []string
	// FDName, when set, is the socket unit's FileDescriptorName=, the
	// name workers see in LISTEN_FDNAMES.
	FDName string
}

func (s *Spec) template() string {
	if s.Template == "" {
		return DefaultTemplate
	}
	return s.Template
}

// check returns the first thing wrong with s that needs no systemd to
// see.
func (s *Spec) check() error {
	if err := CheckName(s.Name); err != nil {
		return badInput(err)
	}
	if err := checkTemplate(s.template()); err != nil {
		return badInput(err)
	}
	if err := s.Config.Validate(); err != nil {
		return badInput(err)
	}
	if !filepath.IsAbs(s.Config.Command[0]) {
		return badInput(fmt.Errorf("command %q: want an absolute path (Command resolves it)", s.Config.Command[0]))
	}
	if len(s.Listen) == 0 {
		return badInput(errors.New("no socket for the app: give --port PORT (every address) or --listen HOST:PORT, or set PORT with -e PORT=3000 or in the environment; an unchanged app's listen(PORT) needs a socket of that port from corral, or its second worker fails with EADDRINUSE"))
	}
	return nil
}

func checkTemplate(t string) error {
	if CheckName(t) != nil || strings.ContainsAny(t, ":.") {
		return fmt.Errorf("template %q: want letters, digits, '_' and '-', as in corral (for corral@.service)", t)
	}
	return nil
}

// PortListen returns the ListenStream= value for --port: the port on
// every address.
func PortListen(port string) (string, error) {
	n, err := strconv.Atoi(strings.TrimSpace(port))
	if err != nil || n < 1 || n > 65535 {
		return "", badInput(fmt.Errorf("--port %q: want a port number from 1 to 65535, as in --port 3000", port))
	}
	return strconv.Itoa(n), nil
}

// ListenStream converts a --listen value, as corral run takes it
// ([NAME=]HOST:PORT, [NAME=]:PORT, [NAME=][::1]:PORT, [NAME=]unix:/PATH),
// into a socket unit's ListenStream= value and the NAME, if any.
func ListenStream(value string) (listen, name string, err error) {
	spec, err := activation.ParseListen(value)
	if err != nil {
		return "", "", badInput(err)
	}
	if spec.Network != "tcp" && spec.Network != "unix" {
		return "", "", badInput(fmt.Errorf("--listen %q: corral start writes stream sockets (ListenStream=) only; for a %s socket write the socket unit's ListenDatagram= or ListenSequentialPacket= yourself (README: UDP and other datagram sockets)", value, spec.Network))
	}
	if spec.Network == "unix" {
		return spec.Address, spec.Name, nil
	}
	if port, ok := strings.CutPrefix(spec.Address, ":"); ok {
		return port, spec.Name, nil
	}
	if strings.HasSuffix(spec.Address, ":0") {
		return "", "", badInput(fmt.Errorf("--listen %q: port 0 picks a port at random, which a socket unit cannot do; give a port", value))
	}
	return spec.Address, spec.Name, nil
}

// listenPort returns the TCP port of a ListenStream= value, or 0 for a
// unix socket.
func listenPort(listen string) int {
	if strings.HasPrefix(listen, "/") {
		return 0
	}
	i := strings.LastIndexByte(listen, ':')
	n, _ := strconv.Atoi(listen[i+1:])
	return n
}

// interpreters are PM2's interpreter rule: a script with one of these
// extensions runs with the program named, any other file runs itself.
var interpreters = map[string]string{".js": "node", ".mjs": "node", ".cjs": "node", ".py": "python3"}

// runtimes are interpreters whose first argument names the app.
var runtimes = []string{"node", "nodejs", "python", "python3", "ruby", "php", "perl", "bun", "deno"}

// Command returns the command that runs script with args, PM2's way: a
// .js, .mjs or .cjs file with node, .py with python3, any other with
// itself, found in dir (the working directory) or else, without a '/',
// in $PATH. interpreter, when set, is the program to run the script with
// instead ("none" runs the script itself). Every program and the script
// are absolute paths in the result.
func Command(script string, args []string, interpreter, dir string) ([]string, error) {
	if script == "" {
		return nil, badInput(errors.New("no script or command: give one, as in corral start app.js or corral start -- node server.js"))
	}
	if interpreter == "" {
		interpreter = interpreters[filepath.Ext(script)]
	}
	if interpreter == "" || interpreter == "none" {
		prog := script
		if !strings.Contains(script, "/") {
			if fi, err := os.Stat(filepath.Join(dir, script)); err == nil && !fi.IsDir() {
				prog = "./" + script
			}
		}
		path, err := activation.LookCommand(prog, dir)
		if err != nil {
			return nil, badInput(err)
		}
		return append([]string{path}, args...), nil
	}
	path, err := activation.LookCommand(interpreter, dir)
	if err != nil {
		return nil, badInput(fmt.Errorf("%w (it runs %s; install it, or give the interpreter's full path)", err, script))
	}
	abs := script
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(dir, script)
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
		return nil, badInput(fmt.Errorf("script %q: no such file in %s", script, dir))
	}
	return append([]string{path, abs}, args...), nil
}

// ResolveCommand returns command with its program as an absolute path,
// found as corral run would find it from dir, and checked to be
// executable.
func ResolveCommand(command []string, dir string) ([]string, error) {
	if len(command) == 0 {
		return nil, badInput(errors.New("no command after --: give one, as in corral start -- node server.js"))
	}
	path, err := activation.LookCommand(command[0], dir)
	if err != nil {
		return nil, badInput(err)
	}
	return append([]string{path}, command[1:]...), nil
}

// DefaultName returns PM2's default name for a command: the script's base
// name without its extension (server for node server.js), else the
// program's.
func DefaultName(command []string) string {
	arg := command[0]
	if slices.Contains(runtimes, filepath.Base(arg)) && len(command) > 1 && !strings.HasPrefix(command[1], "-") {
		arg = command[1]
	}
	base := filepath.Base(arg)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return base
}

// inputError marks an error in what the caller gave: the command line,
// the config, a file or a name.
type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }
func (e inputError) Unwrap() error { return e.err }
func (e inputError) Is(target error) bool {
	return target == ErrBadInput
}

// ErrBadInput is wrapped by every error about the caller's input, which
// changed nothing: a command exits 2 for it.
var ErrBadInput = errors.New("bad input")

func badInput(err error) error {
	if errors.Is(err, ErrBadInput) {
		return err
	}
	return inputError{err}
}
