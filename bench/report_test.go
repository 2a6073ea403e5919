package main

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"odd", []float64{3, 1, 2}, 2},
		{"even", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("%s: median(%v) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestSpread(t *testing.T) {
	if got := spread(&loadResult{PerPID: map[int]int64{1: 300, 2: 100}}); got != 3 {
		t.Errorf("spread = %v, want 3", got)
	}
	if got := spread(&loadResult{}); !math.IsInf(got, 1) {
		t.Errorf("spread of nothing = %v, want +Inf", got)
	}
}

func TestReloadStats(t *testing.T) {
	// 1s at 100 per bucket (1000 req/s), then 1s of reloads with one
	// empty half second, then the tail.
	ok := []int64{100, 100, 100, 100, 100, 100, 100, 100, 100, 100,
		0, 0, 0, 0, 0, 100, 100, 100, 100, 100, 100}
	rr := &reloadResult{ReloadStart: 1, ReloadEnd: 2, Load: &loadResult{BucketOK: ok}}
	rr.stats()
	if rr.BaselineRPS != 1000 || rr.DuringRPS != 500 || rr.MinRPS != 0 {
		t.Errorf("baseline %v, during %v, min %v; want 1000, 500, 0", rr.BaselineRPS, rr.DuringRPS, rr.MinRPS)
	}
}

func TestWrite(t *testing.T) {
	load := func(pids ...int) *loadResult {
		l := &loadResult{RPS: 100, PerPID: map[int]int64{}, BucketOK: make([]int64, 30), BucketKO: make([]int64, 30)}
		for _, p := range pids {
			l.PerPID[p] = 50
		}
		return l
	}
	run := func(target string) *runResult {
		return &runResult{Target: target, Round: 1, NewConn: load(1, 2), KeepAlive: load(1, 2), Moderate: load(1),
			Reload: &reloadResult{Reloads: 2, DurationsMs: []float64{10, 20}, ReloadStart: 1, ReloadEnd: 2, Load: load(1, 2)}}
	}
	rep := &report{Command: "go run ./bench", Config: map[string]any{"workers": 2}, Runs: []*runResult{run("corral"), run("pm2")}}
	dir := t.TempDir()
	if err := rep.write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| reload duration: median ms (lower is better) | 15 | 15 | 1.00 |") {
		t.Errorf("README.md has no reload duration row with ratio 1.00:\n%s", md)
	}
	f, err := os.Open(filepath.Join(dir, "reload.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("reload.png: %v", err)
	}
}
