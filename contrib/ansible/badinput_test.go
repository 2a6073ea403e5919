package ansible_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/corraldev/corral/internal/testenv"
)

// TestBadInput gives the role and the playbook variables that cannot work
// and checks that each is refused on the controller, with a message that
// names the variable and the fix, before any task reaches a host: the
// inventory's only host has no sshd, so a check that let bad input through
// would end in "unreachable" instead of the message.
func TestBadInput(t *testing.T) {
	testenv.Need(t, "ansible-playbook", "ansible-core")
	dir := t.TempDir()
	a := newAnsible(t, dir)
	testenv.WriteFile(t, filepath.Join(dir, "inventory.yml"), fmt.Sprintf(
		"all:\n  hosts:\n    nowhere:\n      ansible_host: 127.0.0.1\n      ansible_port: %d\n", port(t, testenv.FreeAddr(t))))
	good := map[string]any{
		"corral_app_name":    "api",
		"corral_app_command": []string{"/srv/api/bin/api"},
		"corral_app_listen":  []string{"127.0.0.1:8080"},
	}
	cases := []struct {
		name string
		vars map[string]any // over good; nil removes the variable
		want []string       // in the message, each
	}{
		{"name, command, listen", map[string]any{"corral_app_name": "all", "corral_app_command": []string{"api"}, "corral_app_listen": []string{}},
			[]string{`corral_app_name "all": want letters`, `corral_app_command ["api"]: want a list whose first item is the program's absolute path`,
				`corral_app_listen []: want the socket's addresses, at least one`}},
		{"bad characters in the name", map[string]any{"corral_app_name": "my api"}, []string{`corral_app_name "my api": want letters, digits`}},
		{"no name", map[string]any{"corral_app_name": nil}, []string{"missing required arguments: corral_app_name"}},
		{"instances", map[string]any{"corral_app_instances": "lots"}, []string{`corral_app_instances "lots": want a number of workers`}},
		{"environment", map[string]any{"corral_app_environment": map[string]any{"BAD-NAME": "x", "LIST": []int{1}}, "corral_app_secrets": map[string]any{"KEY": "line 1\nline 2"}},
			[]string{"BAD-NAME in corral_app_environment or corral_app_secrets: want variable names", "LIST, KEY in corral_app_environment or corral_app_secrets: want a string or a number on one line"}},
		{"settings", map[string]any{"corral_app_settings": map[string]any{"instances": 4, "max_surge": map[string]int{"a": 1}}},
			[]string{"instances in corral_app_settings: the role has a variable for it; set corral_app_instances instead",
				"max_surge in corral_app_settings: want a string, number, boolean or list"}},
		{"package", map[string]any{"corral_package": "dist/corral.tar.gz"}, []string{`corral_package "dist/corral.tar.gz": want the path of a corral .deb or .rpm`}},
		{"a type", map[string]any{"corral_app_enabled": "sometimes"}, []string{"corral_app_enabled"}},
	}
	var play strings.Builder
	play.WriteString("- hosts: nowhere\n  gather_facts: false\n  tasks:\n")
	for i, c := range cases {
		vars := map[string]any{}
		for k, v := range good {
			vars[k] = v
		}
		for k, v := range c.vars {
			if v == nil {
				delete(vars, k)
				continue
			}
			vars[k] = v
		}
		fmt.Fprintf(&play, `    - block:
        - ansible.builtin.include_role:
            name: corral_app
          vars: %s
      rescue:
        - ansible.builtin.debug:
            msg: "CASE %d: {{ ansible_failed_result.msg }}"
`, jsonText(t, vars), i)
	}
	playbook := filepath.Join(dir, "bad.yml")
	testenv.WriteFile(t, playbook, play.String())
	r := a.play(t, "bad-input", playbook)
	if rc := r.recap["nowhere"]; rc.unreachable != 0 || rc.rescued != len(cases) {
		t.Errorf("recap %+v, want %d rescued and nothing unreachable\n%s", rc, len(cases), r.tail())
	}
	caseLine := regexp.MustCompile(`"msg": "CASE (\d+): (.*)"`)
	msgs := map[string]string{}
	for _, m := range caseLine.FindAllStringSubmatch(r.out, -1) {
		msgs[m[1]] = strings.ReplaceAll(strings.ReplaceAll(m[2], `\"`, `"`), `\n`, "\n")
	}
	for i, c := range cases {
		msg, ok := msgs[fmt.Sprint(i)]
		if !ok {
			t.Errorf("%s: not refused", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: the message does not say %q:\n%s", c.name, w, msg)
			}
		}
		t.Logf("%s: %s", c.name, msg)
	}

	r = a.play(t, "bad-input-playbook", "rolling-reload.yml")
	if r.err == nil || !strings.Contains(r.out, "give the app to reload, as -e corral_app_name=api") || strings.Contains(r.out, "UNREACHABLE") {
		t.Errorf("rolling-reload.yml without corral_app_name: %v\n%s", r.err, r.tail())
	}
}

// jsonText returns v as JSON, which YAML reads as a flow mapping.
func jsonText(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
