package activation

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// interpreters suggests how to run a script that is not executable.
var interpreters = map[string]string{
	".js": "node", ".mjs": "node", ".cjs": "node", ".py": "python3",
	".rb": "ruby", ".php": "php", ".pl": "perl", ".sh": "sh",
}

// LookCommand resolves the command name of a worker to an absolute path
// and checks that it is an executable regular file.
//
// A name without '/' is searched in the directories of $PATH, like
// exec.LookPath; relative $PATH entries are skipped, as exec.LookPath
// refuses them too. A name with '/' is taken as is when absolute and
// relative to dir otherwise (dir itself relative to the current directory,
// or the current directory when dir is empty).
//
// It returns the absolute path, or an error that quotes name and says what
// to do: one wrapping syscall.ENOENT when the file does not exist,
// exec.ErrNotFound when no $PATH directory has it, syscall.EACCES when it is
// not executable (with a hint to chmod +x or use an interpreter), or
// describing a directory or a file that is not regular.
func LookCommand(name, dir string) (string, error) {
	if name == "" {
		return "", errors.New("command \"\": empty; give a program to run")
	}
	if !strings.Contains(name, "/") {
		return lookPath(name)
	}
	wd, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("command %q: working directory: %w", name, err)
	}
	abs := filepath.Clean(name)
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(wd, abs)
	}
	if err := checkExecutable(name, abs); err != nil {
		if errors.Is(err, fs.ErrNotExist) && !filepath.IsAbs(name) {
			return "", fmt.Errorf("%w (working directory %s)", err, wd)
		}
		return "", err
	}
	return abs, nil
}

// lookPath finds name in the absolute directories of $PATH. A file found
// but not executable is reported when no executable one is found.
func lookPath(name string) (string, error) {
	pathEnv := os.Getenv("PATH")
	var firstErr error
	for _, dir := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(dir) {
			continue
		}
		err := checkExecutable(name, filepath.Join(dir, name))
		if err == nil {
			return filepath.Join(dir, name), nil
		}
		if firstErr == nil && !errors.Is(err, fs.ErrNotExist) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("command %q: %w (%s); give the full path", name, exec.ErrNotFound, pathEnv)
}

// checkExecutable reports why path (given by the user as name) is not an
// executable regular file, or nil.
func checkExecutable(name, path string) error {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("command %q: %w", name, syscall.ENOENT)
	case err != nil:
		return fmt.Errorf("command %q: %w", name, err)
	case info.IsDir():
		return fmt.Errorf("command %q: %s is a directory, not a program", name, path)
	case !info.Mode().IsRegular():
		return fmt.Errorf("command %q: %s is not a regular file", name, path)
	}
	if err := unix.Faccessat(unix.AT_FDCWD, path, unix.X_OK, unix.AT_EACCESS); err != nil {
		return fmt.Errorf("command %q: %w: not executable (%s)", name, syscall.EACCES, runHint(path))
	}
	return nil
}

// runHint suggests how to make path runnable.
func runHint(path string) string {
	base := filepath.Base(path)
	if interp, ok := interpreters[filepath.Ext(base)]; ok {
		return "chmod +x, or run it through its interpreter, e.g. " + interp + " " + base
	}
	return "chmod +x, or run it through its interpreter"
}
