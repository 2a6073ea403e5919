package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

func TestInstancesResolve(t *testing.T) {
	for _, tc := range []struct {
		in   string
		cpus int
		want int
	}{
		{"max", 8, 8}, {"0", 8, 8}, {"4", 8, 4}, {"12", 2, 12},
		{"-1", 8, 7}, {"-1", 1, 1}, {"-9", 4, 1},
	} {
		var i Instances
		if err := i.Set(tc.in); err != nil {
			t.Fatalf("Set(%q): %v", tc.in, err)
		}
		if got := i.Resolve(tc.cpus); got != tc.want {
			t.Errorf("Resolve(%q, %d CPUs) = %d, want %d", tc.in, tc.cpus, got, tc.want)
		}
	}
	var i Instances
	if err := i.Set("lots"); err == nil || !strings.Contains(err.Error(), `instances "lots"`) {
		t.Errorf("Set(lots) = %v", err)
	}
}

func TestParseCPUMax(t *testing.T) {
	for in, want := range map[string]int{
		"max 100000": 0, "150000 100000": 2, "100000 100000": 1, "50000 100000": 1,
		"": 0, "junk": 0, "-1 100000": 0,
	} {
		if got := parseCPUMax(in); got != want {
			t.Errorf("parseCPUMax(%q) = %d, want %d", in, got, want)
		}
	}
	if n := AvailableCPUs(); n < 1 {
		t.Errorf("AvailableCPUs() = %d", n)
	}
}

func TestSignalAndDuration(t *testing.T) {
	for _, in := range []string{"SIGQUIT", "quit", "QUIT", "3"} {
		var s Signal
		if err := s.Set(in); err != nil || unix.Signal(s) != unix.SIGQUIT {
			t.Errorf("Signal.Set(%q) = %v, %v", in, unix.Signal(s), err)
		}
	}
	var s Signal
	if err := s.Set("SIGNOPE"); err == nil {
		t.Error("Signal.Set(SIGNOPE) succeeded")
	}
	var d Duration
	if err := d.Set("1m30s"); err != nil || time.Duration(d) != 90*time.Second {
		t.Errorf("Duration.Set(1m30s) = %v, %v", d, err)
	}
	for _, bad := range []string{"30", "-1s", "0s", "soon"} {
		if err := d.Set(bad); err == nil {
			t.Errorf("Duration.Set(%q) succeeded", bad)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api.toml")
	os.WriteFile(path, []byte(`
command = ["node", "server.js"]
instances = 4
listen = ["http=:8080"]
ready_timeout = "1m"
stop_signal = "SIGINT"
working_directory = "/srv/api"
[environment]
NODE_ENV = "production"
`), 0o600)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Instances.Resolve(2) != 4 || time.Duration(c.ReadyTimeout) != time.Minute ||
		unix.Signal(c.StopSignal) != unix.SIGINT || c.Environment["NODE_ENV"] != "production" ||
		time.Duration(c.StopTimeout) != 30*time.Second || c.ReloadFailure != "keep-old" {
		t.Fatalf("loaded %+v", c)
	}
	env := c.Env([]string{"PATH=/bin", "NODE_ENV=development"})
	if strings.Join(env, " ") != "PATH=/bin NODE_ENV=production" {
		t.Errorf("Env = %q", env)
	}

	for name, body := range map[string]string{
		"unknown key":   "instance = 2\n",
		"bad instances": "instances = \"many\"\n",
		"bad duration":  "stop_timeout = 30\n",
		"bad toml":      "command = [\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".toml")
		os.WriteFile(p, []byte(body), 0o600)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: Load = %v, want an error naming %s", name, err, p)
		}
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	file := Default()
	file.Command = []string{"app"}
	file.MaxSurge = 3
	file.Environment = map[string]string{"A": "file", "B": "file"}

	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	flags := Default()
	BindFlags(fs, &flags)
	if err := fs.Parse([]string{"-i", "2", "--stop-timeout", "5s", "-e", "B=flag"}); err != nil {
		t.Fatal(err)
	}
	Overlay(&file, &flags, fs)
	if file.Instances.Resolve(8) != 2 || time.Duration(file.StopTimeout) != 5*time.Second ||
		file.MaxSurge != 3 || file.Environment["A"] != "file" || file.Environment["B"] != "flag" {
		t.Fatalf("after overlay: %+v", file)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Command = nil }, "no command to run"},
		{func(c *Config) { c.Ready = "online" }, `ready "online"`},
		{func(c *Config) { c.IPC = "zmq" }, `ipc "zmq"`},
		{func(c *Config) { c.MaxSurge = 0 }, "max surge 0"},
		{func(c *Config) { c.ReloadFailure = "retry" }, `reload failure "retry"`},
		{func(c *Config) { c.Environment = map[string]string{"A=B": "x"} }, `environment "A=B"`},
		{func(c *Config) { c.ReceiveBuffer.Set("1G") }, "receive buffer 1G: want at most 512M"},
	} {
		c := Default()
		c.Command = []string{"app"}
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
}

func TestSize(t *testing.T) {
	for in, want := range map[string]int64{
		"300M": 300 << 20, "300m": 300 << 20, "300MiB": 300 << 20, "300 MB": 300 << 20,
		"1.5G": 3 << 29, "64k": 64 << 10, "2T": 2 << 40, "536870912": 536870912, "0": 0, "512B": 512,
	} {
		var z Size
		if err := z.Set(in); err != nil || z.Bytes() != want {
			t.Errorf("Size.Set(%q) = %d, %v; want %d", in, z.Bytes(), err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1M", "300X", "1.2.3G", "lots", "9999999T"} {
		var z Size
		if err := z.Set(bad); err == nil || !strings.Contains(err.Error(), "want an amount of memory") {
			t.Errorf("Size.Set(%q) = %d, %v; want an error", bad, z.Bytes(), err)
		}
	}
}

func TestValidateMemory(t *testing.T) {
	c := Default()
	c.Command = []string{"app"}
	c.MaxMemory.Set("600M")
	c.MemoryLimit.Set("512M")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "max_memory 600M is not below memory_limit 512M") {
		t.Errorf("Validate with max_memory above memory_limit = %v", err)
	}
	c.MaxMemory.Set("300M")
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with max_memory 300M, memory_limit 512M = %v", err)
	}
}

// A config that is not a regular file is refused at once: a named pipe
// would block the read (and a reload, and corral with it) until something
// writes to it; corral reads its config again at every reload.
func TestLoadRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{fifo: "a named pipe", dir: "a directory", os.DevNull: "a device"} {
		done := make(chan error, 1)
		go func() {
			_, err := Load(path)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a regular file but "+kind) {
				t.Errorf("Load(%s) = %v, want an error that it is %s", path, err, kind)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) still blocks after 10s", path)
		}
	}
}
