// Command notices writes the license texts of the Go modules compiled
// into corral, which their licenses require a binary distribution to
// carry: the deb's copyright file (the header in packaging/copyright, then
// one DEP-5 paragraph per module, with its license text) and the rpm's
// THIRD-PARTY-NOTICES (each module's LICENSE, COPYING, NOTICE and PATENTS
// files as they are). It reads the modules from `go list -deps`, so a new
// dependency is covered, and fails on a license it does not recognize, so
// a human decides before one ships.
//
//	go run ./packaging/notices -copyright copyright -notices THIRD-PARTY-NOTICES ./cmd/corral
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

func main() {
	header := flag.String("header", "packaging/copyright", "the copyright file's header: corral's own paragraphs")
	copyright := flag.String("copyright", "", "write the deb's copyright file here")
	notices := flag.String("notices", "", "write the modules' license and notice files here")
	flag.Parse()
	if err := run(*header, *copyright, *notices, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "notices: %v\n", err)
		os.Exit(1)
	}
}

// module is a Go module compiled into the binary.
type module struct {
	path, version, dir string
	files              []string // LICENSE, COPYING, NOTICE, PATENTS, in that order
}

func run(header, copyright, notices string, pkgs []string) error {
	mods, err := modules(pkgs)
	if err != nil {
		return err
	}
	if copyright != "" {
		b, err := copyrightFile(header, mods)
		if err != nil {
			return err
		}
		if err := os.WriteFile(copyright, b, 0o644); err != nil {
			return err
		}
	}
	if notices != "" {
		if err := os.WriteFile(notices, noticesFile(mods), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// modules lists the modules that pkgs are built from, but the main one.
func modules(pkgs []string) ([]module, error) {
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}"}, pkgs...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	seen := map[string]bool{}
	var mods []module
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		m := module{path: f[0], version: f[1], dir: f[2]}
		for _, pat := range []string{"LICENSE*", "COPYING*", "NOTICE*", "PATENTS*"} {
			found, _ := filepath.Glob(filepath.Join(m.dir, pat))
			m.files = append(m.files, found...)
		}
		if len(m.files) == 0 {
			return nil, fmt.Errorf("module %s %s has no LICENSE or COPYING file in %s", m.path, m.version, m.dir)
		}
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].path < mods[j].path })
	return mods, nil
}

// licenseName returns the DEP-5 short name of a license text.
func licenseName(text string) (string, error) {
	t := strings.Join(strings.Fields(text), " ")
	switch {
	case strings.Contains(t, "Apache License") && strings.Contains(t, "Version 2.0"):
		return "Apache-2.0", nil
	case strings.Contains(t, "Permission is hereby granted, free of charge"):
		return "Expat", nil
	case strings.Contains(t, "Redistribution and use in source and binary forms") && strings.Contains(t, "Neither the name"):
		return "BSD-3-Clause", nil
	case strings.Contains(t, "Redistribution and use in source and binary forms"):
		return "BSD-2-Clause", nil
	}
	return "", fmt.Errorf("unknown license: %.80q", t)
}

var copyrightLine = regexp.MustCompile(`(?m)^\s*Copyright\s+(?:\(c\)\s*)?(.*\d{4}.*)$`)

// copyrightFile returns the header and a paragraph per module.
func copyrightFile(header string, mods []module) ([]byte, error) {
	var b bytes.Buffer
	h, err := os.ReadFile(header)
	if err != nil {
		return nil, err
	}
	b.Write(bytes.TrimRight(h, "\n"))
	b.WriteString("\n")
	for _, m := range mods {
		lic, err := os.ReadFile(m.files[0])
		if err != nil {
			return nil, err
		}
		name, err := licenseName(string(lic))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.files[0], err)
		}
		var holders []string
		for _, f := range m.files {
			text, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			for _, c := range copyrightLine.FindAllStringSubmatch(string(text), -1) {
				if h := strings.TrimSpace(c[1]); !slices.Contains(holders, h) {
					holders = append(holders, h)
				}
			}
		}
		if len(holders) == 0 {
			holders = []string{"the " + m.path + " authors"}
		}
		fmt.Fprintf(&b, "\nFiles: %s/*\nCopyright: %s\nLicense: %s\n", m.path, strings.Join(holders, "\n "), name)
		if name == "Apache-2.0" {
			b.WriteString(" On Debian systems, the full text of the Apache License, Version 2.0\n is in /usr/share/common-licenses/Apache-2.0.\n")
		} else {
			b.WriteString(paragraph(string(lic)))
		}
		fmt.Fprintf(&b, "Comment: Go module %s %s, compiled into /usr/bin/corral.\n", m.path, m.version)
		for _, f := range m.files[1:] {
			text, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, " .\n Its %s:\n .\n%s", filepath.Base(f), strings.TrimPrefix(paragraph(string(text)), "\n"))
		}
	}
	return b.Bytes(), nil
}

// paragraph returns text as the continuation lines of a DEP-5 field:
// each line indented by a space, an empty line as " .".
func paragraph(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		line = strings.TrimRight(line, " \t")
		if line == "" {
			line = "."
		}
		b.WriteString(" " + line + "\n")
	}
	return b.String()
}

// noticesFile returns every module's license and notice files.
func noticesFile(mods []module) []byte {
	var b bytes.Buffer
	b.WriteString("/usr/bin/corral is a static Go program. It embeds the Go modules below,\nwhose licenses and notices follow, as they ship with each module.\n")
	for _, m := range mods {
		for _, f := range m.files {
			text, _ := os.ReadFile(f)
			fmt.Fprintf(&b, "\n==== %s %s: %s ====\n\n%s\n", m.path, m.version, filepath.Base(f), bytes.TrimSpace(text))
		}
	}
	return b.Bytes()
}
