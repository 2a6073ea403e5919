package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// A setting's flag and its config key set the same field to the same value,
// and change nothing else.
func TestFlagAndKeyAgree(t *testing.T) {
	examples := map[string]struct {
		flags []string // values for the setting's flag, one per use
		toml  string   // the same setting in a config file
	}{
		"command":           {nil, `["app", "-v"]`},
		"instances":         {[]string{"3"}, `3`},
		"listen":            {[]string{"http=:1", "unix:/x.sock", "dns=udp::53"}, `["http=:1", "unix:/x.sock", "dns=udp::53"]`},
		"receive_buffer":    {[]string{"4M"}, `"4M"`},
		"ready":             {[]string{"exec"}, `"exec"`},
		"ipc":               {[]string{"none"}, `"none"`},
		"ready_timeout":     {[]string{"5s"}, `"5s"`},
		"stop_timeout":      {[]string{"1m"}, `"1m"`},
		"stop_signal":       {[]string{"QUIT"}, `"SIGQUIT"`},
		"max_surge":         {[]string{"2"}, `2`},
		"reload_failure":    {[]string{"proceed"}, `"proceed"`},
		"max_memory":        {[]string{"300M"}, `"300M"`},
		"memory_limit":      {[]string{"536870912"}, `536870912`},
		"environment":       {[]string{"A=1", "B=2"}, `{ A = "1", B = "2" }`},
		"working_directory": {[]string{"/srv/api"}, `"/srv/api"`},
	}
	dir := t.TempDir()
	for _, s := range Settings() {
		ex, ok := examples[s.Key]
		if !ok {
			t.Errorf("setting %s has no example here: add one", s.Key)
			continue
		}
		delete(examples, s.Key)
		path := filepath.Join(dir, s.Key+".toml")
		os.WriteFile(path, []byte(s.Key+" = "+ex.toml+"\n"), 0o600)
		fromFile, err := Load(path)
		if err != nil {
			t.Errorf("%s: %v", s.Key, err)
			continue
		}
		if reflect.DeepEqual(fromFile, Default()) {
			t.Errorf("%s = %s changed nothing", s.Key, ex.toml)
		}
		if s.Flag == "" {
			if len(ex.flags) > 0 {
				t.Errorf("%s has no flag, but its example has flag values", s.Key)
			}
			continue
		}

		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		flagCfg := Default()
		BindFlags(fs, &flagCfg)
		var args []string
		for _, v := range ex.flags {
			args = append(args, "--"+s.Flag+"="+v)
		}
		if err := fs.Parse(args); err != nil {
			t.Errorf("%s: %v", s.Flag, err)
			continue
		}
		fromFlags := Default()
		fromFlags.Command = fromFile.Command
		Overlay(&fromFlags, &flagCfg, fs)
		if !reflect.DeepEqual(fromFlags, fromFile) {
			t.Errorf("--%s %q gives\n%+v\nbut %s = %s gives\n%+v", s.Flag, ex.flags, fromFlags, s.Key, ex.toml, fromFile)
		}
	}
	for key := range examples {
		t.Errorf("example for %s, which is no setting", key)
	}
}

// Overlay touches only the settings whose flags were given.
func TestOverlayUnchangedFlags(t *testing.T) {
	file := Default()
	file.Command = []string{"app"}
	file.Listen = []string{":1"}
	file.Ready = "exec"
	file.Environment = map[string]string{"A": "file"}
	want := file
	want.Environment = map[string]string{"A": "file"}

	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	flagCfg := Default()
	BindFlags(fs, &flagCfg)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	Overlay(&file, &flagCfg, fs)
	if !reflect.DeepEqual(file, want) {
		t.Errorf("no flags given, yet overlay changed\n%+v\nto\n%+v", want, file)
	}
}

func TestSettingsDeclared(t *testing.T) {
	for _, s := range Settings() {
		if s.Flag != "" && s.Help == "" {
			t.Errorf("--%s has no help", s.Flag)
		}
	}
	for _, bad := range []struct {
		name string
		t    any
		want string
	}{
		{"no key", struct{ A int }{}, "A has no toml key"},
		{"key twice", struct {
			A int `toml:"a"`
			B int `toml:"a"`
		}{}, `"a" used twice`},
		{"help without a flag", struct {
			A int `toml:"a" help:"x"`
		}{}, "no flag"},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), bad.want) {
					t.Errorf("%s: readFields panicked with %v, want %q", bad.name, r, bad.want)
				}
			}()
			readFields(reflect.TypeOf(bad.t))
		}()
	}
}

// Validate covers what the workers need of instances: whatever it accepts
// resolves to one worker or more on any machine.
func TestValidateInstances(t *testing.T) {
	for _, raw := range []string{"max", "0", "1", "4", "-1", "-64", "-9223372036854775808"} {
		c := Default()
		c.Command = []string{"app"}
		if err := c.Instances.Set(raw); err != nil {
			t.Fatalf("Set(%q): %v", raw, err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("instances %q: Validate = %v", raw, err)
		}
		for _, cpus := range []int{0, 1, 2, 64} {
			if n := c.Instances.Resolve(cpus); n < 1 {
				t.Errorf("instances %q on %d CPUs resolves to %d workers", raw, cpus, n)
			}
		}
	}
	c := Default()
	c.Command = []string{"app"}
	c.Instances = Instances{}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `instances ""`) {
		t.Errorf("Validate of the zero Instances = %v, want an error naming instances", err)
	}
}
