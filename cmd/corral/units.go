package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/corraldev/corral/contrib/systemd"
)

const unitsHelp = `Usage: corral units [--template NAME] [--dir DIR | --print] [--corral PATH] [--force]

Writes corral's systemd units as NAME@.service and NAME@.socket, so that
'systemctl start NAME@api' runs the app configured by /etc/corral/api.toml,
exactly as corral@api does with the units corral ships. Both names use the
same config file, runtime directory and socket path for an app: run an app
under one of them, not both.

Then: systemctl daemon-reload && systemctl enable --now NAME@api.socket
`

// unitsCommand is `corral units`.
func unitsCommand(args []string, stdout io.Writer) error {
	fs := newFlags("units", unitsHelp, stdout)
	var opts systemd.Options
	fs.StringVarP(&opts.Template, "template", "t", systemd.DefaultTemplate, "template name: the units are NAME@.service and NAME@.socket")
	dir := fs.String("dir", "/etc/systemd/system", "directory to write the units to")
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
	for _, u := range units {
		path := filepath.Join(*dir, u.Name)
		if err := writeUnit(path, u.Text); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	}
	name := strings.TrimSuffix(units[0].Name, "@.service")
	fmt.Fprintf(stdout, "next: systemctl daemon-reload && systemctl enable --now %s@APP.socket (runs /etc/corral/APP.toml)\n", name)
	return nil
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
