package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/corraldev/corral/config"
	"github.com/spf13/pflag"
)

// The README's `corral run` table is the user's list of settings: it names
// every flag of `corral run` and every config key, one row each, with the
// flag and the key that set the same thing on one row, and the defaults the
// code has.
func TestReadmeRunTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkRunTable(string(readme), config.Settings(), runFlagSet()) {
		t.Errorf("README.md, section %q: %s", runSection, p)
	}
}

// checkRunTable must catch each way the README and the code can drift.
func TestReadmeRunTableCatchesDrift(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("README.md has no %q to mutate", old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	dropRow := func(start string) func(string) string {
		return func(s string) string {
			i := strings.Index(s, "\n"+start)
			if i < 0 {
				t.Fatalf("README.md has no row starting %q", start)
			}
			end := strings.Index(s[i+1:], "\n")
			return s[:i] + s[i+1+end:]
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(string) string // the README, changed
		added config.Setting      // a setting the code gains
		want  string
	}{
		{name: "setting added without a row",
			added: config.Setting{Key: "max_requests", Flag: "max-requests"}, want: "max_requests has no row"},
		{name: "flag added without a row", added: config.Setting{Flag: "dry-run"}, want: "--dry-run has no row"},
		{name: "setting's row removed", edit: dropRow("| `--max-surge`"), want: "max_surge has no row"},
		{name: "flag-only row removed", edit: dropRow("| `--control`"), want: "--control has no row"},
		{name: "command's row removed", edit: dropRow("| `-- COMMAND"), want: "command has no row"},
		{name: "row for a flag that does not exist",
			edit: replace("| `--control` |", "| `--frobnicate` | | | |\n| `--control` |"), want: "--frobnicate is no flag"},
		{name: "row for a key that does not exist",
			edit: replace("| `--control` | |", "| `--control` | `control` |"), want: "control is no config key"},
		{name: "key paired with another setting's flag",
			edit: replace("| `--ready` | `ready` |", "| `--ready` | `ipc` |"), want: "ipc is set by --ipc, not --ready"},
		{name: "flag's key left out",
			edit: replace("| `--ipc` | `ipc` |", "| `--ipc` | |"), want: "--ipc sets config key ipc"},
		{name: "wrong shorthand",
			edit: replace("| `-l, --listen` |", "| `-L, --listen` |"), want: "--listen: shorthand -L"},
		{name: "shorthand left out",
			edit: replace("| `-l, --listen` |", "| `--listen` |"), want: "--listen: shorthand none"},
		{name: "wrong default",
			edit: replace("| `stop_timeout` | `30s` |", "| `stop_timeout` | `20s` |"), want: `--stop-timeout: default "20s"`},
		{name: "row twice",
			edit: replace("| `--control` |", "| `--control` | | | |\n| `--control` |"), want: "--control has 2 rows"},
		{name: "section renamed", edit: replace("## `corral run`", "## Running"), want: "no table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, settings, fs := readme, config.Settings(), runFlagSet()
			if tc.edit != nil {
				text = tc.edit(text)
			}
			if tc.added != (config.Setting{}) {
				if tc.added.Key != "" {
					settings = append(settings, tc.added)
				}
				fs.String(tc.added.Flag, "", "")
			}
			problems := checkRunTable(text, settings, fs)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q, want one with %q", problems, tc.want)
			}
		})
	}
}

// runFlagSet returns the flags of `corral run`, as runCommand binds them.
func runFlagSet() *pflag.FlagSet {
	fs := newFlags("run", runHelp, io.Discard)
	cfg := config.Default()
	bindRun(fs, new(place), &cfg)
	return fs
}

const runSection = "## `corral run`"

// runRow is one row of the README's `corral run` table.
type runRow struct {
	flag, short string // "instances", "i"; "" for none
	key         string // "instances"; "" for none
	def         string // the default when the cell is one code span
	hasDef      bool
}

// checkRunTable returns every way the table under runSection in readme
// disagrees with settings and the flags on fs; none when they agree.
func checkRunTable(readme string, settings []config.Setting, fs *pflag.FlagSet) []string {
	rows, err := runTable(readme)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	byKey, byFlag := map[string]config.Setting{}, map[string]config.Setting{}
	for _, s := range settings {
		byKey[s.Key] = s
		if s.Flag != "" {
			byFlag[s.Flag] = s
		}
	}
	keyRows, flagRows := map[string]int{}, map[string]int{}
	for _, r := range rows {
		if r.key == "" && r.flag == "" {
			bad("a row names neither a flag nor a config key")
		}
		if r.flag == "" && r.short != "" {
			bad("shorthand -%s has no long flag on its row", r.short)
		}
		if r.key != "" {
			keyRows[r.key]++
			if s, ok := byKey[r.key]; !ok {
				bad("%s is no config key (known: %s)", r.key, strings.Join(slices.Sorted(maps.Keys(byKey)), ", "))
			} else if s.Flag != r.flag {
				bad("config key %s is set by %s, not %s", r.key, dashes(s.Flag), dashes(r.flag))
			}
		}
		if r.flag == "" {
			continue
		}
		flagRows[r.flag]++
		f := fs.Lookup(r.flag)
		if f == nil {
			bad("--%s is no flag of corral run", r.flag)
			continue
		}
		if s, ok := byFlag[r.flag]; ok && r.key == "" {
			bad("--%s sets config key %s; its row names no key", r.flag, s.Key)
		}
		if f.Shorthand != r.short {
			bad("--%s: shorthand %s in the README, %s in the code", r.flag, short(r.short), short(f.Shorthand))
		}
		if r.hasDef && r.def != f.DefValue {
			bad("--%s: default %q in the README, %q in the code", r.flag, r.def, f.DefValue)
		}
	}
	for _, s := range settings {
		if keyRows[s.Key] == 0 {
			bad("config key %s has no row", s.Key)
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if flagRows[f.Name] == 0 {
			bad("flag --%s has no row", f.Name)
		}
	})
	for k, n := range keyRows {
		if n > 1 {
			bad("config key %s has %d rows", k, n)
		}
	}
	for f, n := range flagRows {
		if n > 1 {
			bad("--%s has %d rows", f, n)
		}
	}
	return problems
}

// runTable parses the first table under runSection: its columns are flag,
// config key, default and meaning.
func runTable(readme string) ([]runRow, error) {
	_, section, ok := strings.Cut(readme, "\n"+runSection+"\n")
	if !ok {
		return nil, fmt.Errorf("no table: no line %q", runSection)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var lines []string
	for _, l := range strings.Split(section, "\n") {
		if strings.HasPrefix(l, "|") {
			lines = append(lines, l)
		} else if len(lines) > 0 {
			break // the end of the first table
		}
	}
	if len(lines) < 2 || !slices.Equal(cells(lines[0])[:min(3, len(cells(lines[0])))], []string{"flag", "config key", "default"}) {
		return nil, fmt.Errorf("no table with the columns flag | config key | default | meaning")
	}
	rows := make([]runRow, 0, len(lines)-2)
	for _, l := range lines[2:] {
		c := cells(l)
		if len(c) < 3 {
			return nil, fmt.Errorf("row %q: want four cells", l)
		}
		var r runRow
		for _, part := range strings.Split(firstCode(c[0]), ",") {
			word, _, _ := strings.Cut(strings.TrimSpace(part), " ")
			switch {
			case strings.HasPrefix(word, "--") && len(word) > 2:
				r.flag = word[2:]
			case len(word) == 2 && word[0] == '-' && word[1] != '-':
				r.short = word[1:]
			}
		}
		r.key = strings.Trim(firstCode(c[1]), "[]")
		if d := c[2]; strings.Count(d, "`") == 2 && strings.HasPrefix(d, "`") && strings.HasSuffix(d, "`") {
			r.def, r.hasDef = strings.Trim(d, "`"), true
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// cells splits a table row on the | that are outside code spans.
func cells(line string) []string {
	var out []string
	var cell strings.Builder
	code := false
	for _, ch := range strings.TrimSpace(line)[1:] { // past the leading |
		switch {
		case ch == '`':
			code = !code
		case ch == '|' && !code:
			out = append(out, strings.TrimSpace(cell.String()))
			cell.Reset()
			continue
		}
		cell.WriteRune(ch)
	}
	return out
}

// firstCode returns the text of the first code span in s; "" for none.
func firstCode(s string) string {
	_, rest, ok := strings.Cut(s, "`")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, "`")
	return code
}

func dashes(flag string) string {
	if flag == "" {
		return "no flag"
	}
	return "--" + flag
}

func short(s string) string {
	if s == "" {
		return "none"
	}
	return "-" + s
}
