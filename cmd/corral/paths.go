package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

// place says where an app's runtime files (control and notify sockets)
// live. The same flags on run, reload and status find the same place.
type place struct {
	name    string
	config  string
	control string
}

func (pl *place) bind(fs *pflag.FlagSet) {
	fs.StringVarP(&pl.config, "config", "c", "", "TOML config file (flags override it); its base name is the app's --name")
	fs.StringVarP(&pl.name, "name", "n", "", "app name, to tell several corrals apart (default: the config file's base name, else \"default\")")
	fs.StringVar(&pl.control, "control", "", "control socket path (default: $RUNTIME_DIRECTORY/control.sock under systemd, else /run/corral/NAME/control.sock for root, $XDG_RUNTIME_DIR/corral/NAME/control.sock for others)")
}

// given reports whether any of the flags that find a corral directly was
// given on fs.
func (pl *place) given(fs *pflag.FlagSet) bool {
	return fs.Changed("config") || fs.Changed("name") || fs.Changed("control")
}

// appName returns the name that tells this corral's runtime files apart.
func (pl *place) appName() string {
	if pl.name != "" {
		return pl.name
	}
	if pl.config != "" {
		return strings.TrimSuffix(filepath.Base(pl.config), filepath.Ext(pl.config))
	}
	return "default"
}

// dir returns the runtime directory: systemd's RuntimeDirectory= when set,
// else a per-app directory under /run (root) or $XDG_RUNTIME_DIR.
func (pl *place) dir() string {
	if pl.control != "" {
		return filepath.Dir(pl.control)
	}
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		d, _, _ = strings.Cut(d, ":")
		return d
	}
	base := "/run/corral"
	if os.Getuid() != 0 {
		if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
			base = filepath.Join(x, "corral")
		} else {
			base = filepath.Join(os.TempDir(), fmt.Sprintf("corral-%d", os.Getuid()))
		}
	}
	return filepath.Join(base, pl.appName())
}

func (pl *place) controlPath() string {
	if pl.control != "" {
		return pl.control
	}
	return filepath.Join(pl.dir(), "control.sock")
}

// makeDir creates the runtime directory, mode 0700 when corral creates it.
func (pl *place) makeDir() (string, error) {
	d := pl.dir()
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("create runtime directory: %w", err)
	}
	return d, nil
}
