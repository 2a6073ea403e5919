package config

import (
	"fmt"
	"reflect"
	"slices"
)

// Setting is one setting as Config's tags declare it.
type Setting struct {
	Key       string // its key in the config file
	Flag      string // its long flag, without the dashes; "" for none
	Shorthand string // its one-letter flag; "" for none
	Help      string // its flag's help text
}

// Settings returns every setting, in the order of Config's fields (the
// order of `corral run --help`).
func Settings() []Setting {
	s := make([]Setting, len(fields))
	for i, f := range fields {
		s[i] = f.Setting
	}
	return s
}

// field is a Setting and where it lives in Config.
type field struct {
	Setting
	index int
}

// fields are Config's settings, read from its tags once. A missing or
// repeated key panics here, at start; pflag does the same for a flag
// defined twice.
var fields = readFields(reflect.TypeFor[Config]())

func readFields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		f := field{index: i, Setting: Setting{
			Key:       sf.Tag.Get("toml"),
			Flag:      sf.Tag.Get("flag"),
			Shorthand: sf.Tag.Get("short"),
			Help:      sf.Tag.Get("help"),
		}}
		switch {
		case f.Key == "":
			panic(fmt.Sprintf("config: Config.%s has no toml key", sf.Name))
		case slices.ContainsFunc(fs, func(g field) bool { return g.Key == f.Key }):
			panic(fmt.Sprintf("config: Config.%s: toml key %q used twice", sf.Name, f.Key))
		case f.Flag == "" && (f.Shorthand != "" || f.Help != ""):
			panic(fmt.Sprintf("config: Config.%s has a shorthand or help but no flag", sf.Name))
		}
		fs = append(fs, f)
	}
	return fs
}

// knownKeys returns every key a config file may set.
func knownKeys() []string {
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.Key
	}
	return keys
}
