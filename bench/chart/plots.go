package chart

import (
	"image"
	"image/color"
	"math"
)

// Line is one data series: points (X[i], Y[i]); for bars, Y per category.
type Line struct {
	Name string
	X, Y []float64
	// Color is a Palette index plus one; 0 picks the series' position.
	Color int
	// Dashed draws the line dashed (e.g. p50 beside a solid p99).
	Dashed bool
}

func (l Line) color(i int) color.RGBA {
	if l.Color > 0 {
		return Palette[(l.Color-1)%len(Palette)]
	}
	return Palette[i%len(Palette)]
}

// frame is the plot area of a chart: margins, title, axis labels, legend.
type frame struct {
	c                     canvas
	left, top, right, bot int // plot area in pixels
}

func newFrame(w, h int, title, xlabel, ylabel string, legend []Line) frame {
	if w <= 0 {
		w = 900
	}
	if h <= 0 {
		h = 480
	}
	c := newCanvas(w, h)
	legendW := 0
	for _, l := range legend {
		legendW = max(legendW, textW(l.Name)+30)
	}
	f := frame{c: c, left: 78, top: 36, right: w - 20 - legendW, bot: h - 48}
	c.text((w-textW(title))/2, 10, title, black)
	if xlabel != "" {
		c.text((f.left+f.right-textW(xlabel))/2, h-20, xlabel, axis)
	}
	if ylabel != "" {
		c.vtext(8, (f.top+f.bot-textW(ylabel))/2, ylabel, axis)
	}
	for i, l := range legend {
		y := f.top + 6 + i*18
		col := l.color(i)
		if l.Dashed {
			c.rect(f.right+14, y+5, f.right+19, y+9, col)
			c.rect(f.right+23, y+5, f.right+28, y+9, col)
		} else {
			c.rect(f.right+14, y+3, f.right+28, y+11, col)
		}
		c.text(f.right+32, y, l.Name, black)
	}
	return f
}

// yAxis draws horizontal grid lines and tick labels.
func (f frame) yAxis(s scale) {
	for _, v := range s.ticks() {
		y := s.px(v)
		f.c.line(f.left, y, f.right, y, grid, 1)
		lbl := Num(v)
		f.c.text(f.left-6-textW(lbl), y-6, lbl, axis)
	}
	f.c.line(f.left, f.top, f.left, f.bot, axis, 1)
	f.c.line(f.left, f.bot, f.right, f.bot, axis, 1)
}

func dataRange(series []Line, log bool) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, v := range s.Y {
			if math.IsNaN(v) || (log && v <= 0) {
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	return lo, hi
}

// Lines is a line chart. With Categories, X values are category indexes.
type Lines struct {
	Title, XLabel, YLabel string
	LogX, LogY            bool
	Categories            []string
	Series                []Line
	W, H                  int
}

// Draw renders the chart.
func (l *Lines) Draw() image.Image {
	f := newFrame(l.W, l.H, l.Title, l.XLabel, l.YLabel, l.Series)
	lo, hi := dataRange(l.Series, l.LogY)
	ys := newScale(lo, hi, f.bot, f.top, l.LogY)
	f.yAxis(ys)
	var xs scale
	if len(l.Categories) > 0 {
		xs = scale{lo: -0.5, hi: float64(len(l.Categories)) - 0.5, p0: f.left, p1: f.right}
		for i, cat := range l.Categories {
			x := xs.px(float64(i))
			f.c.line(x, f.bot, x, f.bot+4, axis, 1)
			f.c.text(x-textW(cat)/2, f.bot+8, cat, axis)
		}
	} else {
		xlo, xhi := math.Inf(1), math.Inf(-1)
		for _, s := range l.Series {
			for _, x := range s.X {
				xlo, xhi = math.Min(xlo, x), math.Max(xhi, x)
			}
		}
		if l.LogX {
			xs = scale{lo: math.Log10(xlo) - 0.15, hi: math.Log10(xhi) + 0.15, p0: f.left, p1: f.right, log: true}
		} else {
			pad := (xhi - xlo) * 0.05
			xs = scale{lo: xlo - pad, hi: xhi + pad, p0: f.left, p1: f.right}
		}
		seen := map[float64]bool{}
		for _, s := range l.Series {
			for _, x := range s.X {
				if seen[x] {
					continue
				}
				seen[x] = true
				px := xs.px(x)
				f.c.line(px, f.bot, px, f.bot+4, axis, 1)
				lbl := Num(x)
				f.c.text(px-textW(lbl)/2, f.bot+8, lbl, axis)
			}
		}
	}
	for i, s := range l.Series {
		col := s.color(i)
		px, py := -1, -1
		for j, y := range s.Y {
			if math.IsNaN(y) || (l.LogY && y <= 0) {
				px = -1
				continue
			}
			x := float64(j)
			if len(l.Categories) == 0 && j < len(s.X) {
				x = s.X[j]
			}
			cx, cy := xs.px(x), ys.px(y)
			if px >= 0 {
				if s.Dashed {
					f.c.dashed(px, py, cx, cy, col)
				} else {
					f.c.line(px, py, cx, cy, col, 2)
				}
			}
			f.c.rect(cx-3, cy-3, cx+4, cy+4, col)
			px, py = cx, cy
		}
	}
	return f.c.RGBA
}

// Bars is a grouped bar chart: one group per category, one bar per series.
type Bars struct {
	Title, YLabel string
	LogY          bool
	Categories    []string
	Series        []Line // Y[i] is the bar of category i
	W, H          int
}

// Draw renders the chart, each bar labelled with its value.
func (b *Bars) Draw() image.Image {
	legend := b.Series
	if len(legend) == 1 {
		legend = nil
	}
	f := newFrame(b.W, b.H, b.Title, "", b.YLabel, legend)
	lo, hi := dataRange(b.Series, b.LogY)
	ys := newScale(lo, hi, f.bot, f.top, b.LogY)
	f.yAxis(ys)
	nc, ns := len(b.Categories), max(len(b.Series), 1)
	if nc == 0 {
		return f.c.RGBA
	}
	groupW := (f.right - f.left) / nc
	barW := max((groupW-16)/ns, 2)
	base := f.bot
	if !b.LogY {
		base = ys.px(0)
	}
	for ci, cat := range b.Categories {
		gx := f.left + ci*groupW + 8
		f.c.text(f.left+ci*groupW+(groupW-textW(cat))/2, f.bot+8, cat, axis)
		for si, s := range b.Series {
			if ci >= len(s.Y) || math.IsNaN(s.Y[ci]) {
				continue
			}
			col := s.color(si)
			x0 := gx + si*barW
			y := ys.px(s.Y[ci])
			f.c.rect(x0+1, y, x0+barW-1, base, col)
			lbl := Num(s.Y[ci])
			f.c.text(x0+(barW-textW(lbl))/2, y-14, lbl, black)
		}
	}
	return f.c.RGBA
}

// Scores is a horizontal bar chart of one value per label with a
// reference line (the goal at 1.0): how far each figure is from its goal.
type Scores struct {
	Title, XLabel string
	Labels        []string
	Values        []float64
	Colors        []color.RGBA
	Ref           float64
	W             int
}

// Draw renders the chart; its height follows the number of labels.
func (s *Scores) Draw() image.Image {
	w := s.W
	if w <= 0 {
		w = 900
	}
	labelW := 0
	for _, l := range s.Labels {
		labelW = max(labelW, textW(l))
	}
	rowH := 20
	h := 36 + len(s.Labels)*rowH + 48
	c := newCanvas(w, h)
	c.text((w-textW(s.Title))/2, 10, s.Title, black)
	left, right, top := labelW+16, w-60, 36
	bot := top + len(s.Labels)*rowH
	hi := s.Ref * 1.2
	for _, v := range s.Values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			hi = math.Max(hi, v)
		}
	}
	xs := newScale(0, hi, left, right, false)
	for _, v := range xs.ticks() {
		x := xs.px(v)
		c.line(x, top, x, bot, grid, 1)
		lbl := Num(v)
		c.text(x-textW(lbl)/2, bot+6, lbl, axis)
	}
	if s.XLabel != "" {
		c.text((left+right-textW(s.XLabel))/2, bot+24, s.XLabel, axis)
	}
	for i, l := range s.Labels {
		y := top + i*rowH
		c.text(left-8-textW(l), y+3, l, black)
		v := s.Values[i]
		col := Grey
		if i < len(s.Colors) {
			col = s.Colors[i]
		}
		if math.IsNaN(v) {
			c.text(left+4, y+3, "no data", axis)
			continue
		}
		x := xs.px(math.Min(v, xs.hi))
		c.rect(left, y+3, x, y+rowH-3, col)
		c.text(x+4, y+3, Num(v), black)
	}
	rx := xs.px(s.Ref)
	c.line(rx, top-4, rx, bot+2, color.RGBA{0, 0, 0, 255}, 2)
	c.line(left, top, left, bot, axis, 1)
	return c.RGBA
}
