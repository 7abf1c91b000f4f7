// Package chart draws the simple PNG charts of the benchmark report —
// lines, grouped bars and horizontal score bars — with the standard
// library's image packages and a fixed bitmap font. No styling options
// beyond what the report needs.
package chart

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Palette is the series colours, in order.
var Palette = []color.RGBA{
	{31, 119, 180, 255},  // blue
	{255, 127, 14, 255},  // orange
	{44, 160, 44, 255},   // green
	{214, 39, 40, 255},   // red
	{148, 103, 189, 255}, // purple
	{140, 86, 75, 255},   // brown
	{227, 119, 194, 255}, // pink
	{127, 127, 127, 255}, // grey
}

var (
	white = color.RGBA{255, 255, 255, 255}
	black = color.RGBA{0, 0, 0, 255}
	grid  = color.RGBA{225, 225, 225, 255}
	axis  = color.RGBA{90, 90, 90, 255}
)

// Green, Red and Grey colour score bars.
var (
	Green = color.RGBA{44, 160, 44, 255}
	Red   = color.RGBA{214, 39, 40, 255}
	Grey  = color.RGBA{160, 160, 160, 255}
)

const (
	charW = 7  // basicfont.Face7x13 advance
	lineH = 13 // its height
)

// canvas is an RGBA image with drawing helpers.
type canvas struct{ *image.RGBA }

func newCanvas(w, h int) canvas {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)
	return canvas{img}
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c.RGBA, image.Rect(x0, y0, x1, y1).Canon(), &image.Uniform{col}, image.Point{}, draw.Over)
}

// line draws a line of width w (1..3) with Bresenham's algorithm.
func (c canvas) line(x0, y0, x1, y1 int, col color.RGBA, w int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		for i := 0; i < w; i++ {
			for j := 0; j < w; j++ {
				c.SetRGBA(x0+i-w/2, y0+j-w/2, col)
			}
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

// dashed draws a 2-pixel line in 8-pixel dashes.
func (c canvas) dashed(x0, y0, x1, y1 int, col color.RGBA) {
	n := max(abs(x1-x0), abs(y1-y0))
	if n == 0 {
		return
	}
	for i := 0; i < n; i += 12 {
		j := min(i+8, n)
		c.line(x0+(x1-x0)*i/n, y0+(y1-y0)*i/n, x0+(x1-x0)*j/n, y0+(y1-y0)*j/n, col, 2)
	}
}

// text draws s with its top-left corner at (x, y).
func (c canvas) text(x, y int, s string, col color.Color) {
	d := font.Drawer{Dst: c.RGBA, Src: &image.Uniform{col}, Face: basicfont.Face7x13,
		Dot: fixed.P(x, y+lineH-3)}
	d.DrawString(s)
}

// vtext draws s rotated 90° counter-clockwise, its top-left at (x, y).
func (c canvas) vtext(x, y int, s string, col color.Color) {
	w := len(s) * charW
	tmp := newCanvas(w, lineH)
	tmp.text(0, 0, s, col)
	for ty := 0; ty < lineH; ty++ {
		for tx := 0; tx < w; tx++ {
			p := tmp.RGBAAt(tx, ty)
			if p != white {
				c.SetRGBA(x+ty, y+w-1-tx, p)
			}
		}
	}
}

func textW(s string) int { return len([]rune(s)) * charW }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// scale maps data values to pixels along one axis.
type scale struct {
	lo, hi float64 // data range (log10 when log)
	p0, p1 int     // pixel range
	log    bool
}

func (s scale) px(v float64) int {
	if s.log {
		if v <= 0 {
			v = math.Pow(10, s.lo)
		}
		v = math.Log10(v)
	}
	if s.hi == s.lo {
		return (s.p0 + s.p1) / 2
	}
	return s.p0 + int(math.Round((v-s.lo)/(s.hi-s.lo)*float64(s.p1-s.p0)))
}

// ticks returns tick values (data units) for the scale.
func (s scale) ticks() []float64 {
	var out []float64
	if s.log {
		for e := math.Floor(s.lo); e <= math.Ceil(s.hi); e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if lv := math.Log10(v); lv >= s.lo-1e-9 && lv <= s.hi+1e-9 {
					if m == 1 || s.hi-s.lo < 2.5 {
						out = append(out, v)
					}
				}
			}
		}
		return out
	}
	step := niceStep((s.hi - s.lo) / 5)
	for v := math.Ceil(s.lo/step) * step; v <= s.hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*e >= raw {
			return m * e
		}
	}
	return 10 * e
}

// newScale fits [lo, hi] with a margin (linear scales start at 0 when all
// values are positive).
func newScale(lo, hi float64, p0, p1 int, log bool) scale {
	if math.IsInf(lo, 0) || math.IsNaN(lo) {
		lo, hi = 0, 1
	}
	if log {
		lo, hi = math.Max(lo, 1e-9), math.Max(hi, 1e-9)
		l, h := math.Floor(math.Log10(lo)), math.Log10(hi)
		if h-math.Floor(h) > 1e-9 {
			h = math.Floor(h) + math.Log10(niceCeilMant(hi/math.Pow(10, math.Floor(h))))
		}
		if h <= l {
			h = l + 1
		}
		return scale{lo: l, hi: h, p0: p0, p1: p1, log: true}
	}
	if lo > 0 {
		lo = 0
	}
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	hi = math.Ceil(hi*1.05/step) * step
	return scale{lo: lo, hi: hi, p0: p0, p1: p1}
}

func niceCeilMant(m float64) float64 {
	for _, c := range []float64{1, 2, 5, 10} {
		if m <= c+1e-9 {
			return c
		}
	}
	return 10
}

// Num formats a tick or value label compactly: 1.5k, 250, 0.42, 3M.
func Num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return trim(v/1e6) + "M"
	case a >= 1e4:
		return trim(v/1e3) + "k"
	case a >= 100 || a == 0:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return trim(v)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

func trim(v float64) string {
	s := strconv.FormatFloat(v, 'f', 1, 64)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return s
}

// Encode writes img as PNG.
func Encode(w io.Writer, img image.Image) error {
	if err := png.Encode(w, img); err != nil {
		return fmt.Errorf("chart: png: %w", err)
	}
	return nil
}
