package apps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/corraldev/corral/config"
)

// configText returns cfg as a TOML file that config.Load reads back as
// cfg: every setting whose value differs from config.Default(), under the
// comment header. It walks the fields by their toml tags, so a setting
// added to config.Config is written without a change here; a field of a
// kind it cannot write is an error, which its test catches.
func configText(header string, cfg config.Config) (string, error) {
	var b, tables bytes.Buffer
	for _, line := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		fmt.Fprintf(&b, "# %s\n", line)
	}
	def := config.Default()
	v, dv := reflect.ValueOf(&cfg).Elem(), reflect.ValueOf(def)
	for i := range v.NumField() {
		key := strings.Split(v.Type().Field(i).Tag.Get("toml"), ",")[0]
		f := v.Field(i)
		if key == "" || key == "-" || reflect.DeepEqual(f.Interface(), dv.Field(i).Interface()) || f.IsZero() {
			continue
		}
		if f.Kind() == reflect.Map {
			if err := writeTable(&tables, key, f); err != nil {
				return "", err
			}
			continue
		}
		val, err := tomlValue(f)
		if err != nil {
			return "", fmt.Errorf("config key %s: %w", key, err)
		}
		fmt.Fprintf(&b, "%s = %s\n", key, val)
	}
	if tables.Len() > 0 {
		b.WriteByte('\n')
		b.Write(tables.Bytes())
	}
	return b.String(), nil
}

// tomlValue writes one value: a string, an integer, a list of strings, or
// a type with a String method whose result the type parses back (the
// config's Instances, Duration and Signal).
func tomlValue(f reflect.Value) (string, error) {
	if s, ok := f.Addr().Interface().(fmt.Stringer); ok {
		if _, err := strconv.Atoi(s.String()); err == nil {
			return s.String(), nil // instances = 4
		}
		return quote(s.String()), nil
	}
	switch f.Kind() {
	case reflect.String:
		return quote(f.String()), nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		return fmt.Sprint(f.Int()), nil
	case reflect.Bool:
		return fmt.Sprint(f.Bool()), nil
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			break
		}
		items := make([]string, f.Len())
		for i := range items {
			items[i] = quote(f.Index(i).String())
		}
		return "[" + strings.Join(items, ", ") + "]", nil
	}
	return "", fmt.Errorf("cannot write a %s", f.Type())
}

// writeTable writes a map of strings as a TOML table, keys sorted.
func writeTable(b *bytes.Buffer, key string, f reflect.Value) error {
	if f.Type().Key().Kind() != reflect.String || f.Type().Elem().Kind() != reflect.String {
		return fmt.Errorf("config key %s: cannot write a %s", key, f.Type())
	}
	keys := make([]string, 0, f.Len())
	for _, k := range f.MapKeys() {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	fmt.Fprintf(b, "[%s]\n", key)
	for _, k := range keys {
		fmt.Fprintf(b, "%s = %s\n", bareKey(k), quote(f.MapIndex(reflect.ValueOf(k)).String()))
	}
	return nil
}

// quote returns s as a TOML basic string. JSON's string escapes are all
// valid in TOML.
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// bareKey returns k as a TOML key: bare when TOML allows, else quoted.
func bareKey(k string) string {
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return quote(k)
		}
	}
	if k == "" {
		return quote(k)
	}
	return k
}
