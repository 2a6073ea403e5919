package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/corraldev/corral/apps"
	"github.com/spf13/pflag"
)

// scopeFlags binds --system and --user and returns the manager they ask
// for: by default the system manager for root, the user's own otherwise.
func scopeFlags(fs *pflag.FlagSet) func() (apps.Scope, error) {
	system := fs.Bool("system", false, "use the system manager (the default for root): configs in /etc/corral")
	user := fs.Bool("user", false, "use your own user manager, systemctl --user (the default for other users): configs in ~/.config/corral")
	return func() (apps.Scope, error) {
		switch {
		case *system && *user:
			return 0, usagef("%s: --system and --user exclude each other", fs.Name())
		case *system:
			return apps.System, nil
		case *user:
			return apps.User, nil
		}
		return apps.DefaultScope(), nil
	}
}

// connect connects to the manager scope asks for; ctx ends at SIGINT or
// SIGTERM, so that a command waiting for a job stops waiting (the job
// goes on in systemd).
func connect(scope func() (apps.Scope, error)) (context.Context, *apps.Manager, func(), error) {
	s, err := scope()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	m, err := apps.Connect(ctx, s)
	if err != nil {
		stop()
		if errors.Is(err, apps.ErrNotRoot) {
			return nil, nil, nil, usageError{err}
		}
		if errors.Is(err, apps.ErrNoSystemd) {
			return nil, nil, nil, fmt.Errorf("apps by name need systemd: %w", err)
		}
		return nil, nil, nil, err
	}
	return ctx, m, func() { m.Close(); stop() }, nil
}

// appError makes an error of package apps a usage error when it is about
// the input, so that the command exits 2.
func appError(err error) error {
	if errors.Is(err, apps.ErrBadInput) {
		return usageError{err}
	}
	return err
}

const lsHelp = `Usage: corral ls [--json] [--system | --user]

Lists the apps of the manager (corral list is the same): those corral start
made, and every loaded instance of a template that runs corral, such as
corral@api. State is systemd's (activating, active, reloading, failed,
inactive, auto-restart); CPU is the whole app's, in % of one CPU over the
last 100 ms; MEM is the whole app's (the unit's cgroup, else the sum of its
processes); RESTARTS counts the workers corral restarted after a crash and
the times systemd restarted corral.
`

// lsCommand is `corral ls`.
func lsCommand(args []string, stdout io.Writer) error {
	fs := newFlags("ls", lsHelp, stdout)
	asJSON := fs.Bool("json", false, "print an array of objects")
	scope := scopeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("ls: unexpected argument %q; for one app use corral status %s", fs.Arg(0), fs.Arg(0))
	}
	ctx, m, done, err := connect(scope)
	if err != nil {
		return err
	}
	defer done()
	infos, err := m.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if infos == nil {
			infos = []apps.Info{}
		}
		return printJSON(stdout, infos)
	}
	if len(infos) == 0 {
		fmt.Fprintf(stdout, "no apps under the %s manager; start one: corral start app.js --port 3000\n", m.Scope())
		return nil
	}
	return printTable(stdout, infos)
}

// printTable prints apps as `corral ls` does.
func printTable(w io.Writer, infos []apps.Info) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tONLINE\tGEN\tRESTARTS\tUPTIME\tCPU\tMEM\tLISTEN\tLAST RELOAD")
	for _, in := range infos {
		online, gen := "-", "-"
		if in.Instances > 0 {
			online, gen = fmt.Sprintf("%d/%d", in.Online, in.Instances), fmt.Sprint(in.Generation)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%.1f%%\t%s\t%s\t%s\n", in.Name, in.State, online, gen,
			in.Restarts, uptime(in), in.CPUPercent, bytesSize(in.MemoryBytes),
			strings.Join(in.Listen, ","), lastReload(in))
	}
	return tw.Flush()
}

func lastReload(in apps.Info) string {
	switch r := in.LastReload; {
	case r == nil:
		return "-"
	case r.OK:
		return fmt.Sprintf("ok (generation %d, %v)", r.Generation, r.Duration.Round(time.Millisecond))
	}
	return fmt.Sprintf("failed (generation %d kept)", in.Generation)
}

// uptime prints how long an app has run, or "-" when it does not.
func uptime(in apps.Info) string {
	if in.Since.IsZero() {
		return "-"
	}
	return duration(in.UptimeSeconds)
}

// duration prints an uptime as PM2 does: 45s, 12m, 3h, 2d.
func duration(secs float64) string {
	d := time.Duration(secs) * time.Second
	switch {
	case d < 0:
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func bytesSize(n uint64) string {
	switch {
	case n == 0:
		return "-"
	case n < 1<<20:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// appStatus is `corral status NAME`.
func appStatus(name string, asJSON bool, scope func() (apps.Scope, error), stdout io.Writer) error {
	ctx, m, done, err := connect(scope)
	if err != nil {
		return err
	}
	defer done()
	st, err := m.Status(ctx, name)
	if err != nil {
		return appError(err)
	}
	if asJSON {
		if st.Workers == nil {
			st.Workers = []apps.Worker{}
		}
		return printJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "%s: %s (%s) · %s · %s\n", st.Name, st.State, st.SubState, st.Enabled, st.Unit)
	if st.Status != "" {
		fmt.Fprintf(stdout, "  %s\n", st.Status)
	}
	fmt.Fprintf(stdout, "  listen %s · pid %d · up %s · cpu %.1f%% · mem %s · %d restarts\n",
		strings.Join(st.Listen, ","), st.MainPID, uptime(st.Info), st.CPUPercent, bytesSize(st.MemoryBytes), st.Restarts)
	if r := st.LastReload; r != nil {
		fmt.Fprintf(stdout, "  last reload: %s\n", r.Message)
	}
	if len(st.Workers) == 0 {
		return nil
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tGEN\tSTATE\tUPTIME\tRESTARTS\tCPU\tRSS\tLAST EXIT")
	for _, w := range st.Workers {
		last := w.LastExit
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%d\t%.1f%%\t%s\t%s\n", w.Slot, w.PID, w.Generation, w.State,
			duration(w.UptimeSeconds), w.Restarts, w.CPUPercent, bytesSize(w.RSSBytes), last)
	}
	return tw.Flush()
}

const actionHelp = `Usage: corral %[1]s NAME...|all [--system | --user]

%[2]s Each app is reported; the exit status is 1 if any failed.
`

var actionHelps = map[apps.Action]string{
	apps.Reload: "Rolling reload of each app, as systemctl reload does: new workers replace the old\n" +
		"one slot at a time. Waits for the end; a reload that corral failed (a new worker\n" +
		"exited or was not online in time: the old workers keep serving) prints corral's reason.",
	apps.Restart: "Restarts each app's corral and its workers: the socket stays open, so connections\n" +
		"wait for the new workers and none is refused. Waits until every worker is online.",
	apps.Stop: "Stops each app's workers and its socket; corral restart NAME starts it again, and\n" +
		"an enabled app comes back at boot (corral delete removes it).",
}

// appsAction is `corral reload|restart|stop NAME...`.
func appsAction(action apps.Action, names []string, scope func() (apps.Scope, error), stdout, stderr io.Writer) error {
	for _, n := range names {
		if n != apps.All {
			if err := apps.CheckName(n); err != nil {
				return usageError{err}
			}
		}
	}
	ctx, m, done, err := connect(scope)
	if err != nil {
		return err
	}
	defer done()
	results, err := m.Do(ctx, action, names)
	if err != nil {
		return appError(err)
	}
	failed := 0
	for _, r := range results {
		if r.OK {
			fmt.Fprintf(stdout, "%s: %s\n", r.Name, r.Message)
			continue
		}
		failed++
		fmt.Fprintf(stderr, "corral: %s %s: %s\n", action, r.Name, r.Message)
	}
	if failed > 0 {
		return fmt.Errorf("%s failed for %d of %d apps", action, failed, len(results))
	}
	return nil
}

// actionCommand is `corral restart` and `corral stop`.
func actionCommand(action apps.Action, args []string, stdout, stderr io.Writer) error {
	name := string(action)
	fs := newFlags(name, fmt.Sprintf(actionHelp, name, actionHelps[action]), stdout)
	scope := scopeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("%s: which app? give its name, or all (corral ls lists them)", name)
	}
	return appsAction(action, fs.Args(), scope, stdout, stderr)
}

const deleteHelp = `Usage: corral delete NAME [--system | --user]

Stops the app, disables it, and removes exactly what corral start wrote for
it: its config, its socket's drop-in, the links that enabled it, and its
record. Nothing else: an app set up by hand is left alone.
`

// deleteCommand is `corral delete`.
func deleteCommand(args []string, stdout io.Writer) error {
	fs := newFlags("delete", deleteHelp, stdout)
	scope := scopeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("delete: give one app's name (corral ls lists them)")
	}
	name := fs.Arg(0)
	if err := apps.CheckName(name); err != nil {
		return usageError{err}
	}
	ctx, m, done, err := connect(scope)
	if err != nil {
		return err
	}
	defer done()
	if err := m.Delete(ctx, name); err != nil {
		return appError(err)
	}
	fmt.Fprintf(stdout, "%s: deleted\n", name)
	return nil
}

const logsHelp = `Usage: corral logs NAME [-f] [--lines N] [--since WHEN] [--worker N] [--system | --user]

Shows the app's journal: corral's lines and its workers' output, through
journalctl (-u corral@NAME.service -u corral@NAME.socket). --worker N shows
slot N's output alone, in every generation (journalctl -t NAME/N).
`

// logsCommand is `corral logs`.
func logsCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logs", logsHelp, stdout)
	var opts apps.LogsOptions
	fs.BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines")
	fs.IntVarP(&opts.Lines, "lines", "n", 50, "show the last N lines (0: all)")
	fs.StringVar(&opts.Since, "since", "", "show lines since WHEN, as journalctl takes it: \"1h ago\", today, \"2026-11-25 10:00\"")
	worker := fs.Int("worker", -1, "show only the output of the worker in slot N, every generation of it")
	scope := scopeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("logs: give one app's name (corral ls lists them)")
	}
	if opts.Lines < 0 {
		return usagef("logs: --lines %d: want 0 (all) or more", opts.Lines)
	}
	switch {
	case *worker >= 0:
		opts.Worker = strconv.Itoa(*worker)
	case fs.Changed("worker"):
		return usagef("logs: --worker %d: want a slot, 0 or more (corral status NAME lists them)", *worker)
	}
	ctx, m, done, err := connect(scope)
	if err != nil {
		return err
	}
	defer done()
	argv, err := m.JournalCommand(ctx, fs.Arg(0), opts)
	if err != nil {
		return appError(err)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs: %s: %w", strings.Join(argv, " "), err)
	}
	return nil
}

// readableDir returns the current directory, the PM2 default for an app's
// working directory.
func readableDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("current directory: %w", err)
	}
	return wd, nil
}
