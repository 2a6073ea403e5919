package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
)

// The chart is drawn with the standard library alone: lines, a grey band
// for the reloads, and tick labels in a 3x5 pixel font scaled up.

var (
	blue   = color.RGBA{31, 119, 180, 255}
	orange = color.RGBA{255, 127, 14, 255}
	red    = color.RGBA{214, 39, 40, 255}
	purple = color.RGBA{148, 103, 189, 255}
	ink    = color.RGBA{60, 60, 60, 255}
)

// font3x5 holds the glyphs the labels use, row by row, 3 bits a row.
var font3x5 = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, 'k': {4, 5, 6, 5, 5}, 's': {0, 3, 6, 1, 6},
	'r': {0, 6, 5, 4, 4}, 'e': {0, 7, 7, 4, 3}, 'q': {0, 7, 5, 7, 1}, '/': {1, 1, 2, 4, 4},
	'c': {0, 7, 4, 4, 7}, 'o': {0, 7, 5, 5, 7}, 'a': {0, 6, 3, 5, 7}, 'l': {6, 2, 2, 2, 7},
	'p': {0, 7, 5, 7, 4}, 'm': {0, 7, 7, 5, 5}, 'f': {3, 4, 6, 4, 4}, 'i': {2, 0, 2, 2, 2},
	'd': {1, 1, 7, 5, 7}, '.': {0, 0, 0, 0, 2}, 't': {2, 7, 2, 2, 3}, ' ': {}, '-': {0, 0, 7, 0, 0},
}

// text draws s with its top-left corner at (x, y), each font pixel scale wide.
func text(img draw.Image, x, y int, s string, c color.Color, scale int) {
	for _, r := range s {
		g := font3x5[r]
		for row := range 5 {
			for col := range 3 {
				if g[row]&(4>>col) != 0 {
					fill(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale), c)
				}
			}
		}
		x += 4 * scale
	}
}

func fill(img draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

// line draws from (x0,y0) to (x1,y1), w pixels thick.
func line(img draw.Image, x0, y0, x1, y1 float64, c color.Color, w int) {
	n := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for i := 0; i <= n; i++ {
		x := x0 + (x1-x0)*float64(i)/float64(n)
		y := y0 + (y1-y0)*float64(i)/float64(n)
		fill(img, image.Rect(int(x)-w/2, int(y)-w/2, int(x)-w/2+w, int(y)-w/2+w), c)
	}
}

// band is the span of a target's reloads, in seconds from the start of its load.
type band struct {
	from, to float64
	c        color.Color
}

// series is one line of the chart: per-second rates every step seconds.
type series struct {
	ys    []float64
	c     color.Color
	width int
}

// rates turns 100ms bucket counts into per-second rates over 500ms windows.
func rates(buckets []int64) []float64 {
	var out []float64
	for i := 0; i+5 < len(buckets); i += 5 { // the last bucket is partial: leave it out
		out = append(out, float64(sum(buckets[i:i+5]))*2)
	}
	return out
}

func writeChart(path string, rep *report) error {
	const W, H, left, right, top, bottom = 1000, 500, 70, 20, 40, 50
	var last map[string]*runResult = map[string]*runResult{}
	for _, r := range rep.Runs {
		if r.Reload != nil && (r.Target == "corral" || r.Target == "pm2") {
			last[r.Target] = r
		}
	}
	var ss []series
	var tmax, ymax float64
	var bands []band
	type entry struct {
		s string
		c color.Color
	}
	var legend []entry
	for _, t := range []string{"corral", "pm2"} {
		r, ok := last[t]
		if !ok {
			continue
		}
		c, ce := blue, purple
		if t == "pm2" {
			c, ce = orange, red
		}
		ok5, ko5 := rates(r.Reload.Load.BucketOK), rates(r.Reload.Load.BucketKO)
		ss = append(ss, series{ok5, c, 3}, series{ko5, ce, 2})
		tmax = math.Max(tmax, float64(len(ok5))*0.5)
		for _, v := range append(ok5, ko5...) {
			ymax = math.Max(ymax, v)
		}
		bands = append(bands, band{r.Reload.ReloadStart, r.Reload.ReloadEnd, c})
		tmax = math.Max(tmax, r.Reload.ReloadEnd)
		legend = append(legend, entry{t, c}, entry{t + " failed", ce})
	}
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fill(img, img.Bounds(), color.White)
	if tmax == 0 {
		tmax = 1
	}
	ymax = niceCeil(math.Max(ymax, 1))
	px := func(t float64) float64 { return left + t/tmax*(W-left-right) }
	py := func(v float64) float64 { return H - bottom - v/ymax*(H-top-bottom) }
	for i, b := range bands { // the span of each target's reloads, as a strip under the plot
		y := H - bottom + 26 + 6*i
		fill(img, image.Rect(int(px(b.from)), y, int(px(b.to)), y+4), b.c)
	}
	for i := 0; i <= 5; i++ { // y ticks
		v := ymax * float64(i) / 5
		line(img, left-5, py(v), left, py(v), ink, 1)
		text(img, 5, int(py(v))-5, fmt.Sprintf("%.0f", v), ink, 2)
	}
	step := niceCeil(tmax / 10)
	for t := 0.0; t <= tmax; t += step { // x ticks, seconds
		line(img, px(t), H-bottom, px(t), H-bottom+5, ink, 1)
		text(img, int(px(t))-4, H-bottom+10, fmt.Sprintf("%gs", math.Round(t*100)/100), ink, 2)
	}
	line(img, left, top, left, H-bottom, ink, 1)
	line(img, left, H-bottom, W-right, H-bottom, ink, 1)
	text(img, 5, 10, "req/s", ink, 3)
	for _, s := range ss {
		for i := 1; i < len(s.ys); i++ {
			// Each window's rate is drawn at the window's middle.
			line(img, px(float64(i)*0.5-0.25), py(s.ys[i-1]), px(float64(i)*0.5+0.25), py(s.ys[i]), s.c, s.width)
		}
	}
	x := W - 600
	for _, l := range legend {
		fill(img, image.Rect(x, 12, x+20, 20), l.c)
		text(img, x+26, 8, l.s, ink, 3)
		x += 26 + len(l.s)*12 + 20
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
