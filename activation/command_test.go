package activation

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLookCommand(t *testing.T) {
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	mustWrite(t, filepath.Join(bin, "app"), 0o755)
	mustWrite(t, filepath.Join(bin, "script.js"), 0o644)
	mustWrite(t, filepath.Join(bin, "plain"), 0o600)
	if err := os.Mkdir(filepath.Join(bin, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(bin, "app")

	tests := []struct {
		name, cmd, dir, path string // path is $PATH; cwd is tmp
		want                 string
		wantIs               error
		wantErr              []string
	}{
		{name: "path lookup", cmd: "app", path: bin, want: app},
		{name: "later path entry", cmd: "app", path: filepath.Join(tmp, "none") + ":" + bin, want: app},
		{name: "relative path entry skipped", cmd: "app", path: "bin", wantIs: exec.ErrNotFound},
		{name: "relative to dir", cmd: "./app", dir: bin, want: app},
		{name: "relative to relative dir", cmd: "./app", dir: "bin", want: app},
		{name: "relative to cwd", cmd: "bin/app", want: app},
		{name: "absolute", cmd: app, dir: "/nonexistent", want: app},
		{name: "missing in path", cmd: "nope", path: bin + ":/nonexistent",
			wantIs: exec.ErrNotFound, wantErr: []string{`command "nope": `, "(" + bin + ":/nonexistent); give the full path"}},
		{name: "missing relative", cmd: "./nope", dir: bin,
			wantIs: syscall.ENOENT, wantErr: []string{`command "./nope": no such file`, "(working directory " + bin + ")"}},
		{name: "missing absolute", cmd: "/nonexistent/app", wantIs: syscall.ENOENT},
		{name: "script not executable", cmd: filepath.Join(bin, "script.js"),
			wantIs: syscall.EACCES, wantErr: []string{"permission denied: not executable (chmod +x, or run it through its interpreter, e.g. node script.js)"}},
		{name: "not executable in path", cmd: "plain", path: bin,
			wantIs: syscall.EACCES, wantErr: []string{`command "plain": permission denied: not executable (chmod +x, or run it through its interpreter)`}},
		{name: "directory", cmd: "./sub", dir: bin, wantErr: []string{"is a directory, not a program"}},
		{name: "directory in path", cmd: "sub", path: bin, wantErr: []string{"is a directory"}},
		{name: "empty", cmd: "", wantErr: []string{`command "": empty`}},
	}
	t.Chdir(tmp)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			got, err := LookCommand(tt.cmd, tt.dir)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("LookCommand(%q, %q) = %q, %v; want %q", tt.cmd, tt.dir, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LookCommand(%q, %q) = %q, nil; want an error", tt.cmd, tt.dir, got)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func mustWrite(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
}
