package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/corraldev/corral/apps"
)

const importHelp = `Usage: corral import ecosystem.config.js|ecosystem.json [--env NAME] [--dry-run] [--system | --user]

Starts each app of a PM2 ecosystem file as corral start would, one app per
entry: name, script, args, interpreter, node_args, instances, exec_mode,
cwd, env (with env_NAME laid over it by --env NAME), wait_ready,
listen_timeout, kill_timeout; PORT in env is the port corral listens on.
PM2_GRACEFUL_TIMEOUT and PM2_GRACEFUL_LISTEN_TIMEOUT in the environment
apply as PM2 reads them. A .js file is evaluated with node, as PM2 requires
it. Prints what it created and every key it could not map, and why.
`

// importCommand is `corral import`.
func importCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("import", importHelp, stdout)
	var opts apps.ImportOptions
	fs.StringVar(&opts.Env, "env", "", "use env_NAME of each app over its env, as pm2 start --env NAME")
	dryRun := fs.Bool("dry-run", false, "print the configs and sockets; start nothing")
	var start apps.StartOptions
	fs.BoolVar(&start.NoEnable, "no-enable", false, "do not start the apps at boot")
	scope := scopeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("import: give one ecosystem file, as corral import ecosystem.config.js")
	}
	imported, err := apps.Ecosystem(context.Background(), fs.Arg(0), opts)
	if err != nil {
		return appError(fmt.Errorf("import: %w", err))
	}
	for _, im := range imported {
		for _, u := range im.Unmapped {
			fmt.Fprintf(stderr, "corral: import %s: not mapped: %s\n", im.Spec.Name, u)
		}
	}
	if *dryRun {
		return printImported(imported, stdout)
	}
	ctx, m, done, err := connect(scope)
	if err != nil {
		return err
	}
	defer done()
	var infos []apps.Info
	var failed []string
	for _, im := range imported {
		if im.Err != nil {
			fmt.Fprintf(stderr, "corral: import %s: %v\n", im.Spec.Name, im.Err)
			failed = append(failed, im.Spec.Name)
			continue
		}
		info, err := m.Start(ctx, im.Spec, start)
		var serr *apps.StartError
		if errors.As(err, &serr) {
			for _, l := range serr.Logs {
				fmt.Fprintf(stderr, "  %s\n", l)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "corral: import %s: %v\n", im.Spec.Name, err)
			failed = append(failed, im.Spec.Name)
			continue
		}
		infos = append(infos, info)
	}
	if len(infos) > 0 {
		fmt.Fprintf(stdout, "created %d apps:\n", len(infos))
		printTable(stdout, infos)
	}
	if len(failed) > 0 {
		return fmt.Errorf("import: %d of %d apps not created: %s", len(failed), len(imported), strings.Join(failed, ", "))
	}
	return nil
}

// printImported prints what import would write.
func printImported(imported []apps.Imported, stdout io.Writer) error {
	bad := 0
	for i, im := range imported {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if im.Err != nil {
			fmt.Fprintf(stdout, "# %s: cannot be created: %v\n", im.Spec.Name, im.Err)
			bad++
			continue
		}
		text, err := im.Spec.ConfigText()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "# %s.toml\n%s\n# %s@%s.socket.d/corral-start.conf\n%s", im.Spec.Name, text, apps.DefaultTemplate, im.Spec.Name, im.Spec.SocketDropIn())
	}
	if bad > 0 {
		return usagef("import: %d of %d apps cannot be created", bad, len(imported))
	}
	return nil
}
