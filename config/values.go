package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Instances is how many workers to run, PM2 style: N (> 0); "max" or 0 for
// one per available CPU; -K for the available CPUs minus K, at least 1.
type Instances struct {
	raw string
}

// Set parses s; it implements pflag.Value.
func (i *Instances) Set(s string) error {
	v := Instances{raw: strings.TrimSpace(s)}
	if err := v.check(); err != nil {
		return err
	}
	*i = v
	return nil
}

// check reports what is wrong with i, the setting and the fix. Whatever
// passes resolves to at least one worker on any machine (see Resolve).
func (i Instances) check() error {
	if i.raw == "max" {
		return nil
	}
	if _, err := strconv.Atoi(i.raw); err != nil {
		return fmt.Errorf("instances %q: want a number of workers (4), max or 0 (one per CPU), or -K (CPUs minus K)", i.raw)
	}
	return nil
}

func (i *Instances) String() string { return i.raw }

// Type implements pflag.Value.
func (i *Instances) Type() string { return "N|max|-K" }

// UnmarshalTOML accepts instances = 4, instances = -1 or instances = "max".
func (i *Instances) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		return i.Set(strconv.FormatInt(v, 10))
	case string:
		return i.Set(v)
	}
	return fmt.Errorf("instances = %v: want a number, \"max\" or a negative number", v)
}

// Resolve returns the number of workers for cpus available CPUs: at least
// one, whatever i and cpus are.
func (i Instances) Resolve(cpus int) int {
	n, err := strconv.Atoi(i.raw)
	switch {
	case i.raw == "max" || i.raw == "" || err != nil || n == 0:
		return max(cpus, 1)
	case n < 0:
		return max(cpus+n, 1)
	}
	return n
}

// Duration is a time.Duration written as "30s", "500ms" or "2m".
type Duration time.Duration

// Set parses s; it implements pflag.Value.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || v <= 0 {
		return fmt.Errorf("%q: want a positive duration such as 30s, 500ms or 2m", s)
	}
	*d = Duration(v)
	return nil
}

func (d *Duration) String() string { return time.Duration(*d).String() }

// Type implements pflag.Value.
func (d *Duration) Type() string { return "duration" }

// UnmarshalText lets TOML files write durations as strings.
func (d *Duration) UnmarshalText(b []byte) error { return d.Set(string(b)) }

// Signal is a signal written as SIGTERM, TERM or 15.
type Signal unix.Signal

// Set parses s; it implements pflag.Value.
func (sg *Signal) Set(s string) error {
	name := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(name); err == nil {
		if unix.SignalName(unix.Signal(n)) == "" {
			return fmt.Errorf("signal %q: no such signal number", s)
		}
		*sg = Signal(n)
		return nil
	}
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	n := unix.SignalNum(name)
	if n == 0 {
		return fmt.Errorf("signal %q: want a signal name such as SIGTERM, SIGINT or SIGQUIT", s)
	}
	*sg = Signal(n)
	return nil
}

func (sg *Signal) String() string { return unix.SignalName(unix.Signal(*sg)) }

// Type implements pflag.Value.
func (sg *Signal) Type() string { return "signal" }

// UnmarshalText lets TOML files write signals as strings.
func (sg *Signal) UnmarshalText(b []byte) error { return sg.Set(string(b)) }

// Size is an amount of memory in bytes, written as systemd's MemoryMax=
// and PM2's max_memory_restart write it: a number of bytes, or a number
// with K, M, G or T (powers of 1024; "300M", "1.5G", "512MiB" and "64kb"
// too). The zero value is unset.
type Size struct {
	raw   string
	bytes int64
}

// sizeUnits are the suffixes Size takes, upper-cased, without "B" or "IB".
var sizeUnits = map[string]int64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

// Set parses s; it implements pflag.Value. "0" unsets the size.
func (z *Size) Set(s string) error {
	raw := strings.TrimSpace(s)
	i := strings.IndexFunc(raw, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(raw)
	}
	unit := strings.ToUpper(strings.TrimSpace(raw[i:]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
	mult, ok := sizeUnits[unit]
	n, err := strconv.ParseFloat(raw[:i], 64)
	if !ok || err != nil || n < 0 || n*float64(mult) >= 1<<62 {
		return fmt.Errorf("%q: want an amount of memory such as 300M, 1.5G or 536870912 (bytes); K, M, G and T are powers of 1024", s)
	}
	*z = Size{raw: raw, bytes: int64(n * float64(mult))}
	if z.bytes == 0 {
		*z = Size{}
	}
	return nil
}

// Bytes returns the size in bytes; 0 when unset.
func (z Size) Bytes() int64 { return z.bytes }

func (z *Size) String() string { return z.raw }

// Type implements pflag.Value.
func (z *Size) Type() string { return "size" }

// UnmarshalTOML accepts max_memory = "300M" and max_memory = 314572800.
func (z *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		return z.Set(strconv.FormatInt(v, 10))
	case string:
		return z.Set(v)
	}
	return fmt.Errorf("%v: want an amount of memory such as \"300M\", or a number of bytes", v)
}

// FormatBytes writes an amount of memory for a person, in powers of 1024
// as Size reads them: "312.4 MiB".
func FormatBytes(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
