package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/spf13/pflag"
)

// BindFlags defines on fs a flag for every setting that has one, in the
// order of Config's fields, each setting its field of c. Their defaults are
// c's current values, so bind to a Default().
func BindFlags(fs *pflag.FlagSet, c *Config) {
	v := reflect.ValueOf(c).Elem()
	for _, f := range fields {
		if f.Flag != "" {
			bindFlag(fs, v.Field(f.index).Addr().Interface(), f.Setting)
		}
	}
}

// bindFlag defines s's flag for the field at p, by the field's type.
func bindFlag(fs *pflag.FlagSet, p any, s Setting) {
	switch p := p.(type) {
	case pflag.Value:
		fs.VarP(p, s.Flag, s.Shorthand, s.Help)
	case *string:
		fs.StringVarP(p, s.Flag, s.Shorthand, *p, s.Help)
	case *int:
		fs.IntVarP(p, s.Flag, s.Shorthand, *p, s.Help)
	case *[]string:
		fs.StringArrayVarP(p, s.Flag, s.Shorthand, *p, s.Help)
	case *map[string]string:
		fs.StringToStringVarP(p, s.Flag, s.Shorthand, *p, s.Help)
	default:
		panic(fmt.Sprintf("config: no kind of flag for --%s (%T)", s.Flag, p))
	}
}

// Overlay copies into dst every setting whose flag was given on fs, read
// from src, the Config that BindFlags bound. A map (the environment given
// with --env) is added to dst's rather than put in its place.
func Overlay(dst *Config, src *Config, fs *pflag.FlagSet) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for _, f := range fields {
		if f.Flag == "" || !fs.Changed(f.Flag) {
			continue
		}
		to, from := d.Field(f.index), s.Field(f.index)
		if from.Kind() != reflect.Map {
			to.Set(from)
			continue
		}
		if to.IsNil() {
			to.Set(reflect.MakeMap(to.Type()))
		}
		for it := from.MapRange(); it.Next(); {
			to.SetMapIndex(it.Key(), it.Value())
		}
	}
}

// Describe returns the settings as one line, for the log at start and
// after a reload.
func (c *Config) Describe(instances int) string {
	s := fmt.Sprintf("command %q, %d instances, ready=%s, ready timeout %v, stop %v then SIGKILL after %v, max surge %d, reload failure %s",
		strings.Join(c.Command, " "), instances, c.ReadyMode(), &c.ReadyTimeout, &c.StopSignal, &c.StopTimeout, c.MaxSurge, c.ReloadFailure)
	if c.MaxMemory.Bytes() > 0 {
		s += fmt.Sprintf(", max memory %v", &c.MaxMemory)
	}
	if c.MemoryLimit.Bytes() > 0 {
		s += fmt.Sprintf(", memory limit %v", &c.MemoryLimit)
	}
	if c.ReceiveBuffer.Bytes() > 0 {
		s += fmt.Sprintf(", UDP receive buffer %v", &c.ReceiveBuffer)
	}
	return s
}
