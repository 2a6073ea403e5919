package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every module compiled into corral gets a paragraph with a license
// corral knows, and its notice files; none is left out.
func TestNoticesCoverEveryModule(t *testing.T) {
	mods, err := modules([]string{"github.com/corraldev/corral/cmd/corral"})
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) == 0 {
		t.Fatal("go list found no modules")
	}
	dir := t.TempDir()
	cp, notices := filepath.Join(dir, "copyright"), filepath.Join(dir, "notices")
	if err := run("../copyright", cp, notices, []string{"github.com/corraldev/corral/cmd/corral"}); err != nil {
		t.Fatal(err)
	}
	c, _ := os.ReadFile(cp)
	n, _ := os.ReadFile(notices)
	for _, m := range mods {
		if !strings.Contains(string(c), "\nFiles: "+m.path+"/*\n") {
			t.Errorf("copyright has no paragraph for %s", m.path)
		}
		if !strings.Contains(string(n), "==== "+m.path+" ") {
			t.Errorf("THIRD-PARTY-NOTICES lacks %s", m.path)
		}
	}
	if !strings.Contains(string(c), "This product includes software developed at CoreOS") {
		t.Error("copyright lacks go-systemd's NOTICE, which Apache-2.0 requires to be carried")
	}
	if !strings.HasPrefix(string(c), "Format: ") || !strings.Contains(string(c), "\nFiles: *\nCopyright: 2026 corral developers\nLicense: Apache-2.0\n") {
		t.Errorf("copyright does not start with corral's own paragraph:\n%.400s", c)
	}
}

func TestLicenseName(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"Apache License\n Version 2.0, January 2004", "Apache-2.0"},
		{"Permission is hereby granted, free of charge, to any person", "Expat"},
		{"Redistribution and use in source and binary forms ... Neither the name of Google", "BSD-3-Clause"},
		{"Redistribution and use in source and binary forms, with or without", "BSD-2-Clause"},
	} {
		if got, err := licenseName(tc.text); got != tc.want || err != nil {
			t.Errorf("licenseName(%.30q) = %q, %v; want %q", tc.text, got, err, tc.want)
		}
	}
	if _, err := licenseName("GNU GENERAL PUBLIC LICENSE Version 3"); err == nil {
		t.Error("an unknown license passed")
	}
}
