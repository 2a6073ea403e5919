package apps

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Record is what Start wrote and enabled for an app, so that Delete
// removes exactly that and List knows the app even while systemd has
// not loaded its units. It is written before anything else, and again as
// each step is done, so a start that stopped half way can still be
// deleted.
type Record struct {
	Name     string    `json:"name"`
	Template string    `json:"template"`
	Created  time.Time `json:"created"`
	Command  []string  `json:"command"`
	Dir      string    `json:"working_directory"`
	Listen   []string  `json:"listen"`
	// Files are the files Start wrote: the config and the socket drop-in.
	Files []string `json:"files"`
	// Dirs are the directories Start created, deepest last; Delete
	// removes each that is empty.
	Dirs []string `json:"dirs,omitempty"`
	// Enabled are the unit files Start enabled, and Links the symbolic
	// links systemd made for them, which Delete disables.
	Enabled []string `json:"enabled,omitempty"`
	Links   []string `json:"links,omitempty"`
	// LastFailure says why the app's last start or restart failed, which
	// left it stopped (systemd's own result may be reset by then); empty
	// once one succeeded.
	LastFailure string `json:"last_failure,omitempty"`
}

// recordPath returns where the record of the app name is.
func (m *Manager) recordPath(name string) string {
	return filepath.Join(m.paths.Records, name+".json")
}

// readRecord returns the record of the app name, or an error wrapping
// os.ErrNotExist when it has none.
func (m *Manager) readRecord(name string) (Record, error) {
	var r Record
	b, err := os.ReadFile(m.recordPath(name))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("record %s: %w (remove it and the app's files by hand)", m.recordPath(name), err)
	}
	if r.Name != name {
		return r, fmt.Errorf("record %s is of the app %q, not %q", m.recordPath(name), r.Name, name)
	}
	return r, nil
}

// writeRecord saves r, creating the records directory.
func (m *Manager) writeRecord(r Record) error {
	if err := os.MkdirAll(m.paths.Records, 0o755); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(m.recordPath(r.Name), append(b, '\n'), 0o644)
}

// noteFailure sets the record's LastFailure, for an app that has one.
func (m *Manager) noteFailure(name, failure string) {
	r, err := m.readRecord(name)
	if err != nil || r.LastFailure == failure {
		return
	}
	r.LastFailure = failure
	m.writeRecord(r) // a record that cannot be written was not written by start either
}

// records returns the names of the apps that have a record, sorted.
func (m *Manager) records() ([]string, error) {
	ents, err := os.ReadDir(m.paths.Records)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	var names []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(name, ".") && CheckName(name) == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// writeFile writes b to path through a temporary file in the same
// directory and a rename, so that no reader (systemd, corral run) ever
// sees half of it.
func writeFile(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // nothing is left to remove after the rename
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// mkdirs creates dir and its missing parents, mode 0755, and returns the
// ones it created, parents first.
func mkdirs(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return made, fmt.Errorf("create %s: %w", missing[i], err)
		}
		made = append(made, missing[i])
	}
	return made, nil
}
