package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/corraldev/corral/apps"
	"github.com/corraldev/corral/contrib/systemd"
)

const unitsHelp = `Usage: corral units [--user] [--template NAME] [--dir DIR | --print] [--corral PATH] [--force]

Writes corral's systemd units as NAME@.service and NAME@.socket, so that
'systemctl start NAME@api' runs the app configured by /etc/corral/api.toml,
exactly as corral@api does with the units corral ships. Both names use the
same config file, runtime directory and socket path for an app: run an app
under one of them, not both.

--user writes the units for a user's own manager (systemctl --user), which
run apps configured in ~/.config/corral/ as that user: into
~/.config/systemd/user, or as root into /etc/systemd/user, for every user.
The packages install them in /usr/lib/systemd/user.

Then 'corral start' runs an app under them, or by hand:
systemctl daemon-reload && systemctl enable --now NAME@api.socket
`

// unitsCommand is `corral units`.
func unitsCommand(args []string, stdout io.Writer) error {
	fs := newFlags("units", unitsHelp, stdout)
	var opts systemd.Options
	fs.StringVarP(&opts.Template, "template", "t", systemd.DefaultTemplate, "template name: the units are NAME@.service and NAME@.socket")
	fs.BoolVar(&opts.User, "user", false, "write the units for a user's own manager (systemctl --user)")
	dir := fs.String("dir", "", "directory to write the units to (default /etc/systemd/system; with --user, ~/.config/systemd/user, or /etc/systemd/user for root)")
	printOnly := fs.Bool("print", false, "print the units to stdout instead of writing them")
	fs.StringVar(&opts.Corral, "corral", systemd.DefaultCorral, "corral's absolute path, for ExecStart= and ExecReload=")
	force := fs.Bool("force", false, "overwrite units that exist and differ")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("units: unexpected argument %q (see corral units --help)", fs.Arg(0))
	}
	if opts.Template == "" || opts.Corral == "" {
		return usagef("units: --template and --corral may not be empty")
	}
	units, err := systemd.Units(opts)
	if err != nil {
		return usageError{fmt.Errorf("units: %w", err)}
	}
	if *dir == "" {
		if *dir, err = unitDir(opts.User); err != nil {
			return err
		}
	}
	if *printOnly {
		for i, u := range units {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "# %s\n%s", u.Name, u.Text)
		}
		return nil
	}
	for _, u := range units {
		if err := checkUnit(filepath.Join(*dir, u.Name), u.Text, *force); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return fmt.Errorf("units: %w", err)
	}
	for _, u := range units {
		path := filepath.Join(*dir, u.Name)
		if err := writeUnit(path, u.Text); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	}
	name := strings.TrimSuffix(units[0].Name, "@.service")
	start := "corral start"
	if name != systemd.DefaultTemplate {
		start += " --template " + name
	}
	if opts.User {
		fmt.Fprintf(stdout, "next: %s --user app.js --port 3000, or systemctl --user daemon-reload && systemctl --user enable --now %s@APP.socket (runs ~/.config/corral/APP.toml)\n", start, name)
		return nil
	}
	fmt.Fprintf(stdout, "next: %s app.js --port 3000, or systemctl daemon-reload && systemctl enable --now %s@APP.socket (runs /etc/corral/APP.toml)\n", start, name)
	return nil
}

// unitDir returns where corral units writes by default.
func unitDir(user bool) (string, error) {
	if !user {
		return "/etc/systemd/system", nil
	}
	if os.Geteuid() == 0 {
		return "/etc/systemd/user", nil
	}
	paths, err := apps.ScopePaths(apps.User)
	if err != nil {
		return "", fmt.Errorf("units: %w", err)
	}
	return paths.Units, nil
}

// checkUnit returns an error if path holds a different unit and force is
// not set, so that nothing is written unless every unit can be.
func checkUnit(path, text string, force bool) error {
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("units: %w", err)
	case bytes.Equal(old, []byte(text)) || force:
		return nil
	}
	return fmt.Errorf("units: %s exists and differs; compare with corral units --print, or pass --force to overwrite it", path)
}

// writeUnit writes text to path, mode 0644, through a temporary file in the
// same directory, so that systemd never reads half a unit.
func writeUnit(path, text string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("units: %w", err)
	}
	defer os.Remove(f.Name()) // after a successful rename, there is nothing to remove
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("units: write %s: %w", path, err)
	}
	return nil
}
