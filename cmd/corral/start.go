package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/corraldev/corral/apps"
	"github.com/corraldev/corral/config"
	"github.com/spf13/pflag"
)

const startHelp = `Usage: corral start SCRIPT [flags] [-- ARG...]
       corral start [flags] -- COMMAND [ARG...]
       corral start NAME                     start an app that exists, stopped

Runs an app by name under systemd, PM2's way: it writes the app's config
(the file corral run --config reads) and its socket's port, enables it so
that it starts at boot, starts it, and waits until every worker is online.
A .js, .mjs or .cjs SCRIPT runs with node, a .py one with python3, any other
with itself; its arguments go after --. The name defaults to the script's
base name; the working directory is the current one. The environment is
what -e gives (and PORT), not the whole shell's.

As root the app runs under the system manager (/etc/corral/NAME.toml), as
anyone else under your own (~/.config/corral/NAME.toml); --system and
--user choose.

Examples:
  corral start app.js -i max --port 3000
  corral start server.py -n api --port 8000 -e DATABASE_URL=postgres://db/api
  corral start --listen 127.0.0.1:8080 -- /srv/api/bin/api --flag
`

// startCommand is `corral start`.
func startCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("start", startHelp, stdout)
	flagCfg := config.Default()
	var name, template, interpreter string
	var ports []string
	var opts apps.StartOptions
	fs.StringVarP(&name, "name", "n", "", "the app's name (default: the script's base name, as PM2)")
	fs.StringArrayVarP(&ports, "port", "p", nil, "listen on PORT on every address (ListenStream=PORT); repeatable")
	config.BindFlags(fs, &flagCfg)
	// Two of corral run's flags mean something else here: the socket unit
	// listens, and the working directory is the current one, as in PM2.
	fs.Lookup("listen").Usage = "listen on ADDR: [NAME=]HOST:PORT, [NAME=][::1]:PORT or [NAME=]unix:/PATH (the socket's ListenStream=); repeatable"
	fs.Lookup("chdir").Usage = "working directory of the workers (default: the current directory)"
	fs.StringVar(&interpreter, "interpreter", "", "run SCRIPT with this program instead of PM2's rule (none: run it itself)")
	fs.BoolVarP(&opts.Force, "force", "f", false, "replace an app of the same name")
	fs.BoolVar(&opts.NoEnable, "no-enable", false, "do not start the app at boot")
	fs.StringVar(&template, "template", apps.DefaultTemplate, "the units' template: TEMPLATE@NAME.service (see corral units --template)")
	scope := scopeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	before, after := splitDash(fs)
	if len(before) == 1 && len(after) == 0 && fs.NFlag() == 0 && maybeApp(before[0]) {
		if started, err := startExisting(before[0], scope, stdout, stderr); started || err != nil {
			return err
		}
	}
	spec, err := startSpec(fs, flagCfg, name, template, interpreter, ports, before, after)
	if err != nil {
		return err
	}
	ctx, mgr, done, err := connect(scope)
	if err != nil {
		return err
	}
	defer done()
	if mgr.Scope() == apps.User {
		if ok, user := apps.Lingering(); !ok {
			fmt.Fprintf(stderr, "corral: note: %s has no lingering: your apps stop when you log out and do not start at boot; to keep them, have root run: loginctl enable-linger %s\n", user, user)
		}
	}
	info, err := mgr.Start(ctx, spec, opts)
	var serr *apps.StartError
	if errors.As(err, &serr) {
		for _, l := range serr.Logs {
			fmt.Fprintf(stderr, "  %s\n", l)
		}
		return fmt.Errorf("start %s: %w; corral logs %s shows its output, corral delete %s removes it", spec.Name, err, spec.Name, spec.Name)
	}
	if err != nil {
		return appError(fmt.Errorf("start %s: %w", spec.Name, err))
	}
	return printTable(stdout, []apps.Info{info})
}

// splitDash returns the positional arguments before -- and after it.
func splitDash(fs *pflag.FlagSet) (before, after []string) {
	args := fs.Args()
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		return args[:dash], args[dash:]
	}
	return args, nil
}

// maybeApp reports whether `corral start ARG` may name an app rather
// than a script: a valid name, no '/', no script extension, and no file
// of that name here.
func maybeApp(arg string) bool {
	if strings.Contains(arg, "/") || apps.CheckName(arg) != nil {
		return false
	}
	switch filepath.Ext(arg) {
	case ".js", ".mjs", ".cjs", ".py":
		return false
	}
	_, err := os.Stat(arg)
	return errors.Is(err, os.ErrNotExist)
}

// startExisting starts the app name if there is one, as PM2's `pm2 start
// api` does, and reports whether there was.
func startExisting(name string, scope func() (apps.Scope, error), stdout, stderr io.Writer) (bool, error) {
	ctx, m, done, err := connect(scope)
	if err != nil {
		return false, nil // the script path says what is wrong
	}
	has, err := m.Has(ctx, name)
	done()
	if err != nil || !has {
		return false, nil
	}
	return true, appsAction(apps.StartIt, []string{name}, scope, stdout, stderr)
}

// startSpec builds the app from the command line.
func startSpec(fs *pflag.FlagSet, flagCfg config.Config, name, template, interpreter string, ports, before, after []string) (apps.Spec, error) {
	dir, err := readableDir()
	if err != nil {
		return apps.Spec{}, err
	}
	if fs.Changed("chdir") {
		if dir, err = filepath.Abs(flagCfg.WorkingDirectory); err != nil {
			return apps.Spec{}, err
		}
	}
	var command []string
	switch {
	case len(before) == 0 && len(after) == 0:
		return apps.Spec{}, usagef("start: what to run? give a script (corral start app.js) or a command after -- (corral start -- node server.js); see corral start --help")
	case len(before) == 0:
		command, err = apps.ResolveCommand(after, dir)
	case len(before) == 1:
		command, err = apps.Command(before[0], after, interpreter, dir)
	default:
		return apps.Spec{}, usagef("start: one SCRIPT, then its own arguments after --, as in corral start %s -- %s", before[0], strings.Join(before[1:], " "))
	}
	if err != nil {
		return apps.Spec{}, appError(fmt.Errorf("start: %w", err))
	}
	if name == "" {
		name = apps.DefaultName(command)
		if err := apps.CheckName(name); err != nil {
			return apps.Spec{}, usagef("start: %v; give the app a name with --name", err)
		}
	} else if err := apps.CheckName(name); err != nil {
		return apps.Spec{}, usagef("start: %v", err)
	}
	cfg := config.Default()
	config.Overlay(&cfg, &flagCfg, fs)
	cfg.Command, cfg.WorkingDirectory, cfg.Listen = command, dir, nil
	spec := apps.Spec{Name: name, Template: template, Config: cfg}
	if err := startListen(&spec, ports, flagCfg.Listen); err != nil {
		return apps.Spec{}, err
	}
	return spec, nil
}

// startListen sets the app's sockets from --port and --listen, else from
// PORT in -e or the environment, and gives the app PORT when it has one
// TCP port and no PORT of its own.
func startListen(spec *apps.Spec, ports, listens []string) error {
	env := spec.Config.Environment
	if len(ports) == 0 && len(listens) == 0 {
		if p, ok := env["PORT"]; ok {
			ports = []string{p}
		} else if p := os.Getenv("PORT"); p != "" {
			ports = []string{p}
		}
	}
	names := map[string]bool{}
	for _, p := range ports {
		l, err := apps.PortListen(p)
		if err != nil {
			return usageError{err}
		}
		spec.Listen = append(spec.Listen, l)
	}
	for _, v := range listens {
		l, name, err := apps.ListenStream(v)
		if err != nil {
			return usageError{err}
		}
		spec.Listen = append(spec.Listen, l)
		if name != "" {
			names[name] = true
			spec.FDName = name
		}
	}
	if len(names) > 1 {
		return usagef("start: --listen names %d sockets differently, but one socket unit gives all its sockets one name (FileDescriptorName=); start with one name, then see the README's \"Listening on TCP, or on several sockets\"", len(names))
	}
	var tcp []string
	for _, l := range spec.Listen {
		if !strings.HasPrefix(l, "/") {
			tcp = append(tcp, l)
		}
	}
	if _, ok := env["PORT"]; !ok && len(tcp) == 1 {
		if spec.Config.Environment == nil {
			spec.Config.Environment = map[string]string{}
		}
		spec.Config.Environment["PORT"] = tcp[0][strings.LastIndexByte(tcp[0], ':')+1:]
	}
	return nil
}
