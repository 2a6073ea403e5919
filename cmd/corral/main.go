// Command corral runs N workers of a web app on shared listening sockets,
// the systemd way: see `corral help`.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/apps"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // something failed at run time
	exitUsage   = 2 // the command line or the configuration is wrong
)

// usageError marks an error in what the user typed or configured.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

const mainHelp = `corral runs N workers of a web app that share the same listening sockets,
replaces them one slot at a time on reload without dropping a request, and
reports to systemd with sd_notify.

Apps by name, under systemd (PM2's commands; root: the system manager,
others: their own user manager; --system and --user choose):
  corral start SCRIPT [flags] [-- ARG...]  run an app as a unit that survives reboots
  corral start [flags] -- COMMAND [ARG...]
  corral ls [--json]                       list the apps (also: corral list)
  corral status NAME [--json]              an app's state and its workers
  corral reload NAME...|all                rolling reload; exits non-zero if it failed
  corral restart NAME...|all               new corral and workers; the socket stays open
  corral stop NAME...|all                  stop the workers and the socket
  corral delete NAME                       stop it and remove what corral start wrote
  corral logs NAME [-f] [--lines N]        the app's journal
  corral import ecosystem.config.js        PM2 ecosystem file to apps

corral itself:
  corral run [flags] -- COMMAND [ARG...]   run and supervise the workers
  corral reload [--name NAME | --config FILE | --control PATH]
                                           rolling reload; waits, exits non-zero if it failed
  corral status [--json] [--name NAME | --config FILE | --control PATH]
                                           show the workers
  corral units [--user] [--template NAME] [--dir DIR | --print]
                                           write the systemd units NAME@.service and NAME@.socket
  corral version                           print the version

Examples:
  corral start app.js -i max --port 3000
  corral reload app
  corral run --listen 127.0.0.1:8080 -- node server.js
  corral run -i 4 --listen http=:8080 --listen admin=unix:/run/api/admin.sock -- ./api --flag
  corral run --config /etc/corral/api.toml

Run 'corral COMMAND --help' for a command's flags.
`

func main() {
	activation.MaybeRunTrampoline()
	os.Exit(corral(os.Args[1:], os.Stdout, os.Stderr))
}

// corral runs the command line args and returns the exit code.
func corral(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainHelp)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "run":
		err = runCommand(args[1:], stdout, stderr)
	case "reload":
		err = reloadCommand(args[1:], stdout, stderr)
	case "status":
		err = statusCommand(args[1:], stdout)
	case "start":
		err = startCommand(args[1:], stdout, stderr)
	case "ls", "list":
		err = lsCommand(args[1:], stdout)
	case "restart":
		err = actionCommand(apps.Restart, args[1:], stdout, stderr)
	case "stop":
		err = actionCommand(apps.Stop, args[1:], stdout, stderr)
	case "delete":
		err = deleteCommand(args[1:], stdout)
	case "logs":
		err = logsCommand(args[1:], stdout, stderr)
	case "import":
		err = importCommand(args[1:], stdout, stderr)
	case "units":
		err = unitsCommand(args[1:], stdout)
	case "version", "--version", "-V":
		fmt.Fprintf(stdout, "corral %s\n", buildVersion())
	case "help", "--help", "-h":
		fmt.Fprint(stdout, mainHelp)
	default:
		err = usagef("unknown command %q: want start, ls, status, reload, restart, stop, delete, logs, import, run, units or version (see corral help)", args[0])
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "corral: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "corral: %v\n", err)
	return exitFailure
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newFlags returns a flag set whose errors are returned, not printed, and
// whose --help prints usage and the flags to stdout.
func newFlags(name, usage string, stdout io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprint(stdout, usage)
		fmt.Fprintln(stdout, "\nFlags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args, turning a flag error into a usage error that
// points at --help.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err // pflag printed the usage
		}
		return usagef("%s: %v (see corral %s --help)", fs.Name(), err, fs.Name())
	}
	return nil
}
