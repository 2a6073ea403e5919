package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/corraldev/corral/apps"
	"github.com/corraldev/corral/config"
	"github.com/corraldev/corral/control"
)

const reloadHelp = `Usage: corral reload NAME...|all [--system | --user]
       corral reload [--name NAME | --config FILE | --control PATH]

With app names: a rolling reload of each app under systemd, as systemctl
reload does; see corral start. Each app is reported; the exit status is 1 if
any failed, with corral's reason.

Without: asks a running corral for a rolling reload and waits until it has
ended. Prints the result; exits 0 when the new generation serves every slot,
1 when the reload failed (the old workers keep serving). Use it as systemd's
ExecReload=, so that 'systemctl reload' waits for the reload and fails when
it failed. With $MAINPID set, as systemd sets it for ExecReload=, it asks
only a control socket that the service's main process serves.
`

const statusHelp = `Usage: corral status NAME [--json] [--system | --user]
       corral status [--json] [--name NAME | --config FILE | --control PATH]

With an app's name: its state under systemd and its worker table (slot, PID,
generation, state, uptime, restarts, CPU % and RSS of the worker and its
descendants, last exit). Without: the state of a running corral, found by
its control socket, and a table of its workers.
`

// reloadCommand is `corral reload`.
func reloadCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reload", reloadHelp, stdout)
	var pl place
	pl.bind(fs)
	scope := scopeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		if pl.given(fs) {
			return usagef("reload: app names (%s) and --name, --config or --control exclude each other: the names are apps under systemd, the flags find a corral by its control socket", strings.Join(fs.Args(), " "))
		}
		return appsAction(apps.Reload, fs.Args(), scope, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Under systemd (ExecReload=, which runs as root outside the sandbox)
	// only the service's main process may answer: see control.ReloadServedBy.
	mainPID, err := mainPIDFromEnv()
	if err != nil {
		return err
	}
	r, err := control.ReloadServedBy(ctx, pl.controlPath(), mainPID)
	if err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%s", r.Message)
	}
	fmt.Fprintf(stdout, "%s in %v\n", r.Message, r.Duration.Round(time.Millisecond))
	return nil
}

// mainPIDFromEnv returns $MAINPID, which systemd sets for ExecReload= and
// the unit's other control processes, or 0 when it is unset.
func mainPIDFromEnv() (int, error) {
	v, ok := os.LookupEnv("MAINPID")
	if !ok {
		return 0, nil
	}
	pid, err := strconv.Atoi(v)
	if err != nil || pid <= 0 {
		return 0, usagef("reload: MAINPID=%q is not a process ID: systemd sets it to the service's main process for ExecReload=; unset it to reload a corral by its control socket alone", v)
	}
	return pid, nil
}

// statusCommand is `corral status`.
func statusCommand(args []string, stdout io.Writer) error {
	fs := newFlags("status", statusHelp, stdout)
	var pl place
	pl.bind(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	scope := scopeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 1:
		return usagef("status: one app at a time (corral ls shows them all)")
	case fs.NArg() == 1 && pl.given(fs):
		return usagef("status: an app name (%s) and --name, --config or --control exclude each other", fs.Arg(0))
	case fs.NArg() == 1:
		if err := apps.CheckName(fs.Arg(0)); err != nil {
			return usageError{err}
		}
		return appStatus(fs.Arg(0), *asJSON, scope, stdout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.Status(ctx, pl.controlPath())
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(stdout, "%s: %s\n\n", st.State, st.Line)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tGEN\tSTATE\tUPTIME\tMEMORY\tCPU\tRESTARTS\tRECYCLES\tLAST EXIT")
	for _, w := range st.Workers {
		last := w.LastExit
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%v\t%s\t%.1f%%\t%d\t%d\t%s\n", w.Slot, w.PID, w.Generation, w.State,
			time.Since(w.Started).Round(time.Second), config.FormatBytes(w.MemoryBytes), w.CPUPercent, w.Restarts, w.Recycles, last)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	limit := ""
	if st.MaxMemory > 0 {
		limit = ", max_memory " + config.FormatBytes(st.MaxMemory) + " per worker"
	}
	_, err = fmt.Fprintf(stdout, "\ntotal: %s, %.1f%% CPU (100%% is one CPU)%s; figures from %s\n",
		config.FormatBytes(st.MemoryBytes), st.CPUPercent, limit, st.Accounting)
	return err
}
