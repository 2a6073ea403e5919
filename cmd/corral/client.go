package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/corraldev/corral/control"
)

const reloadHelp = `Usage: corral reload [--name NAME | --config FILE | --control PATH]

Asks a running corral for a rolling reload and waits until it has ended. Prints
the result; exits 0 when the new generation serves every slot, 1 when the reload
failed (the old workers keep serving). Use it as systemd's ExecReload=, so that
'systemctl reload' waits for the reload and fails when it failed.
`

const statusHelp = `Usage: corral status [--json] [--name NAME | --config FILE | --control PATH]

Prints the state of a running corral and a table of its workers.
`

// reloadCommand is `corral reload`.
func reloadCommand(args []string, stdout io.Writer) error {
	fs := newFlags("reload", reloadHelp, stdout)
	var pl place
	pl.bind(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("reload: unexpected argument %q (see corral reload --help)", fs.Arg(0))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r, err := control.Reload(ctx, pl.controlPath())
	if err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%s", r.Message)
	}
	fmt.Fprintf(stdout, "%s in %v\n", r.Message, r.Duration.Round(time.Millisecond))
	return nil
}

// statusCommand is `corral status`.
func statusCommand(args []string, stdout io.Writer) error {
	fs := newFlags("status", statusHelp, stdout)
	var pl place
	pl.bind(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("status: unexpected argument %q (see corral status --help)", fs.Arg(0))
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
	fmt.Fprintln(tw, "SLOT\tPID\tGEN\tSTATE\tUPTIME\tRESTARTS\tLAST EXIT")
	for _, w := range st.Workers {
		last := w.LastExit
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%v\t%d\t%s\n", w.Slot, w.PID, w.Generation, w.State,
			time.Since(w.Started).Round(time.Second), w.Restarts, last)
	}
	return tw.Flush()
}
