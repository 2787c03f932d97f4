package chaos

// This file is the output of a fault-suite run: the timeline plot
// (PlotTimeline), the one-screen text summary (WriteSummary) and the run
// directory that holds everything a reader needs to understand a run
// without the run command (WriteRunDir).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// ---------------------------------------------------------------------------
// Timeline plot

// Size of the timeline image. The PNG is timelineWidth × timelineHeight at
// timelineDPI (1200 × 800 pixels).
const (
	timelineWidth  = 12 * vg.Inch
	timelineHeight = 8 * vg.Inch
	timelineDPI    = 100

	// maxScatterPoints caps the latency scatter (evenly subsampled above
	// it) so that the SVG of a long run stays a reasonable size; the
	// p50/p99 lines always use every op.
	maxScatterPoints = 12000
	// maxBins caps the number of throughput bins: bins are 1 s wide unless
	// the run is longer than maxBins seconds.
	maxBins = 20000
	// maxLabelRows is how many rows fault labels are staggered over.
	maxLabelRows = 4
)

// faultFamilies are the fault families (Fault.Family), in the order
// reports list them.
var faultFamilies = Families

// Colors of the op types (throughput lines) and latency series.
var (
	colorOK   = color.NRGBA{R: 0x1a, G: 0x96, B: 0x1a, A: 0xff}
	colorFail = color.NRGBA{R: 0xd6, G: 0x10, B: 0x3c, A: 0xff}
	colorInfo = color.NRGBA{R: 0xf0, G: 0x8c, B: 0x00, A: 0xff}
	colorLat  = color.NRGBA{R: 0x1f, G: 0x4e, B: 0x9c, A: 0x50}
	colorP50  = color.NRGBA{R: 0x10, G: 0x10, B: 0x10, A: 0xff}
	colorP99  = color.NRGBA{R: 0x8c, G: 0x1e, B: 0xb4, A: 0xff}
)

// familyColor is the opaque color of a fault family; bands use it
// translucent, labels opaque.
func familyColor(family string) color.NRGBA {
	switch family {
	case "process":
		return color.NRGBA{R: 0xe0, G: 0x30, B: 0x30, A: 0xff}
	case "partition":
		return color.NRGBA{R: 0x20, G: 0x78, B: 0xe0, A: 0xff}
	case "latency":
		return color.NRGBA{R: 0xb0, G: 0x96, B: 0x00, A: 0xff}
	case "clock":
		return color.NRGBA{R: 0x96, G: 0x30, B: 0xc8, A: 0xff}
	case "restart":
		return color.NRGBA{R: 0x60, G: 0x60, B: 0x60, A: 0xff}
	case "clock-skew":
		return color.NRGBA{R: 0xc8, G: 0x50, B: 0xa0, A: 0xff}
	case "leader":
		return color.NRGBA{R: 0x00, G: 0x90, B: 0x90, A: 0xff}
	case "leader-kill":
		return color.NRGBA{R: 0xe0, G: 0x70, B: 0x10, A: 0xff}
	}
	return color.NRGBA{R: 0x00, G: 0x90, B: 0x90, A: 0xff}
}

func bandColor(family string) color.NRGBA {
	c := familyColor(family)
	c.A = 0x3c
	return c
}

// PlotTimeline draws a Jepsen-style timeline of a run and writes it as SVG
// to svgPath and as PNG to pngPath (an empty path skips that format). The x
// axis is seconds since the first op's Invoke. The top panel is throughput:
// ops completed per second in 1 s bins, one line per op type (ok, fail,
// info; an op that never completed counts at its Invoke). The bottom panel
// is the latency of OK ops (Complete − Invoke) on a log axis in
// milliseconds: every op as a dot (evenly subsampled beyond a few thousand)
// and the p50 and p99 of the ops invoked in each second. Every fault's
// window is a translucent band across both panels, colored by family and
// labelled with its name in the top panel; a legend heads the image. It
// works with no ops and with no faults.
func PlotTimeline(ops []Op, faults []Fault, title string, svgPath, pngPath string) error {
	tl := newTimeline(ops, faults)
	var errs []error
	if svgPath != "" {
		c := vgsvg.New(timelineWidth, timelineHeight)
		tl.draw(draw.New(c), title)
		errs = append(errs, writeFileWith(svgPath, func(w io.Writer) error {
			_, err := c.WriteTo(w)
			return err
		}))
	}
	if pngPath != "" {
		c := vgimg.NewWith(vgimg.UseWH(timelineWidth, timelineHeight), vgimg.UseDPI(timelineDPI))
		tl.draw(draw.New(c), title)
		errs = append(errs, writeFileWith(pngPath, func(w io.Writer) error {
			_, err := vgimg.PngCanvas{Canvas: c}.WriteTo(w)
			return err
		}))
	}
	return errors.Join(errs...)
}

// faultSpan is a fault window in plot seconds.
type faultSpan struct {
	family, name string
	start, end   float64
}

// timeline is the data of a timeline plot, in seconds since origin.
type timeline struct {
	xmin, xmax float64
	binW       float64
	// rates are ok, fail, info throughput per bin, as steps.
	rates   [3]plotter.XYs
	maxRate float64
	// lat is the (subsampled) latency scatter, p50/p99 the per-bin
	// percentiles as contiguous segments (a bin without OK ops breaks the
	// line rather than bridging an outage).
	lat            plotter.XYs
	p50, p99       []plotter.XYs
	latMin, latMax float64
	spans          []faultSpan
	families       []string
}

func newTimeline(ops []Op, faults []Fault) *timeline {
	tl := &timeline{}

	// Origin: the first op's Invoke (ops with no Invoke are unusable), or
	// the first fault if there are no ops.
	origin, haveOrigin := int64(0), false
	for i := range ops {
		if ops[i].Invoke != 0 && (!haveOrigin || ops[i].Invoke < origin) {
			origin, haveOrigin = ops[i].Invoke, true
		}
	}
	if !haveOrigin {
		for i := range faults {
			if faults[i].Start != 0 && (!haveOrigin || faults[i].Start < origin) {
				origin, haveOrigin = faults[i].Start, true
			}
		}
	}
	sec := func(ns int64) float64 { return float64(ns-origin) / 1e9 }

	// Extent.
	xmax := 0.0
	for i := range ops {
		op := &ops[i]
		if op.Invoke == 0 {
			continue
		}
		xmax = math.Max(xmax, sec(op.Invoke))
		if op.Complete >= op.Invoke {
			xmax = math.Max(xmax, sec(op.Complete))
		}
	}
	xmin := 0.0
	for i := range faults {
		f := &faults[i]
		if f.Start == 0 {
			continue
		}
		xmin = math.Min(xmin, sec(f.Start))
		xmax = math.Max(xmax, sec(f.Start))
		if f.End > f.Start {
			xmax = math.Max(xmax, sec(f.End))
		}
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	tl.xmin, tl.xmax = xmin, xmax

	// Fault spans; one not healed runs to the end of the plot.
	seenFamily := map[string]bool{}
	for i := range faults {
		f := &faults[i]
		if f.Start == 0 {
			continue
		}
		end := xmax
		if f.End > f.Start {
			end = sec(f.End)
		}
		tl.spans = append(tl.spans, faultSpan{family: f.Family, name: f.Name, start: sec(f.Start), end: end})
		seenFamily[f.Family] = true
	}
	sort.SliceStable(tl.spans, func(i, j int) bool { return tl.spans[i].start < tl.spans[j].start })
	tl.families = orderFamilies(seenFamily)

	// Bins.
	lo := math.Floor(xmin)
	tl.binW = 1
	if (xmax-lo)/tl.binW > maxBins {
		tl.binW = math.Ceil((xmax - lo) / maxBins)
	}
	nbins := max(int(math.Ceil((xmax-lo)/tl.binW)), 1)
	bin := func(t float64) int {
		return min(max(int((t-lo)/tl.binW), 0), nbins-1)
	}
	// The last bin usually ends past xmax: its rate is over the part that
	// the run covered, and a sliver of a bin is not plotted at all (its
	// rate would be noise).
	width := func(b int) float64 {
		return min(tl.binW, xmax-(lo+float64(b)*tl.binW))
	}
	center := func(b int) float64 { return lo + float64(b)*tl.binW + width(b)/2 }
	plotted := nbins
	if nbins > 1 && width(nbins-1) < tl.binW/2 {
		plotted--
	}

	var counts [3][]int
	for k := range counts {
		counts[k] = make([]int, nbins)
	}
	latBins := make([][]float64, nbins)
	var lats plotter.XYs
	for i := range ops {
		op := &ops[i]
		if op.Invoke == 0 {
			continue
		}
		completed := op.Complete != 0 && op.Complete >= op.Invoke
		at := op.Invoke
		if completed {
			at = op.Complete
		}
		kind := 2
		switch op.Type {
		case OK:
			kind = 0
		case Fail:
			kind = 1
		}
		if !completed {
			kind = 2 // never completed: the outcome is unknown
		}
		counts[kind][bin(sec(at))]++
		if op.Type == OK && completed {
			ms := math.Max(float64(op.Complete-op.Invoke)/1e6, 1e-3)
			t := sec(op.Invoke)
			lats = append(lats, plotter.XY{X: t, Y: ms})
			b := bin(t)
			latBins[b] = append(latBins[b], ms)
		}
	}
	for k := range counts {
		// A step line: each bin's rate across the bin.
		tl.rates[k] = make(plotter.XYs, 0, 2*plotted)
		for b, n := range counts[k][:plotted] {
			r := float64(n) / width(b)
			start := lo + float64(b)*tl.binW
			tl.rates[k] = append(tl.rates[k], plotter.XY{X: start, Y: r}, plotter.XY{X: start + width(b), Y: r})
			tl.maxRate = math.Max(tl.maxRate, r)
		}
	}

	// Latency scatter (subsampled) and range.
	tl.latMin, tl.latMax = math.Inf(1), math.Inf(-1)
	for _, p := range lats {
		tl.latMin = math.Min(tl.latMin, p.Y)
		tl.latMax = math.Max(tl.latMax, p.Y)
	}
	stride := (len(lats) + maxScatterPoints - 1) / maxScatterPoints
	if stride <= 1 {
		tl.lat = lats
	} else {
		for i := 0; i < len(lats); i += stride {
			tl.lat = append(tl.lat, lats[i])
		}
	}

	// Per-bin percentiles.
	var seg50, seg99 plotter.XYs
	flush := func() {
		if len(seg50) > 0 {
			tl.p50 = append(tl.p50, seg50)
			tl.p99 = append(tl.p99, seg99)
		}
		seg50, seg99 = nil, nil
	}
	for b, v := range latBins[:plotted] {
		if len(v) == 0 {
			flush()
			continue
		}
		slices.Sort(v)
		seg50 = append(seg50, plotter.XY{X: center(b), Y: quantile(v, 0.50)})
		seg99 = append(seg99, plotter.XY{X: center(b), Y: quantile(v, 0.99)})
	}
	flush()
	return tl
}

// quantile is the nearest-rank q-quantile of sorted v (non-empty).
func quantile(v []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[min(max(i, 0), len(v)-1)]
}

// orderFamilies lists the families in seen: the known ones in their order,
// then any others alphabetically.
func orderFamilies(seen map[string]bool) []string {
	var out []string
	for _, f := range faultFamilies {
		if seen[f] {
			out = append(out, f)
		}
	}
	var other []string
	for f := range seen {
		if !slices.Contains(faultFamilies, f) {
			other = append(other, f)
		}
	}
	sort.Strings(other)
	return append(out, other...)
}

func textStyle(size vg.Length, clr color.Color) text.Style {
	return text.Style{
		Color:   clr,
		Font:    font.From(plot.DefaultFont, size),
		Handler: plot.DefaultTextHandler,
		XAlign:  text.XLeft,
		YAlign:  text.YTop,
	}
}

// draw renders the timeline onto c.
func (tl *timeline) draw(c draw.Canvas, title string) {
	// White background (the SVG canvas is transparent otherwise).
	c.FillPolygon(color.White, []vg.Point{
		c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y},
	})

	top, bottom := tl.plots()
	header := tl.legendItems()

	pad := vg.Points(8)
	y := c.Max.Y - pad
	if title != "" {
		ts := textStyle(vg.Points(14), color.Black)
		ts.XAlign = text.XCenter
		c.FillText(ts, vg.Point{X: c.Center().X, Y: y}, title)
		y -= ts.Height(title) + vg.Points(4)
	}
	y = drawLegendStrip(c, header, c.Min.X+pad, c.Max.X-pad, y)

	area := c
	area.Max.Y = y - vg.Points(2)
	tiles := draw.Tiles{
		Rows: 2, Cols: 1,
		PadTop: vg.Points(2), PadBottom: pad, PadLeft: pad, PadRight: pad * 2,
		PadY: vg.Points(14),
	}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, area)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
}

// plots builds the throughput and latency panels.
func (tl *timeline) plots() (top, bottom *plot.Plot) {
	top = plot.New()
	top.X.Label.Text = "time (s)"
	top.Y.Label.Text = "throughput (ops/s)"
	if tl.binW != 1 {
		top.Y.Label.Text = fmt.Sprintf("throughput (ops/s, %gs bins)", tl.binW)
	}
	top.X.Tick.Marker = plot.TickerFunc(plainTicks)
	top.Y.Tick.Marker = plot.TickerFunc(plainTicks)
	top.Add(&faultBands{spans: tl.spans})
	top.Add(plotter.NewGrid())
	for k, clr := range []color.Color{colorOK, colorFail, colorInfo} {
		l, err := plotter.NewLine(tl.rates[k])
		if err != nil { // only on NaN/Inf, which the bins cannot hold
			continue
		}
		l.LineStyle.Color = clr
		l.LineStyle.Width = vg.Points(1.2)
		top.Add(l)
	}
	top.Add(&faultLabels{spans: tl.spans})
	// Ranges are set after Add, which widens them to the data's. Headroom
	// above the highest rate leaves room for the fault labels.
	top.X.Min, top.X.Max = tl.xmin, tl.xmax
	top.Y.Min, top.Y.Max = 0, math.Max(tl.maxRate*1.3, 1)

	bottom = plot.New()
	bottom.X.Label.Text = "time (s)"
	bottom.Y.Label.Text = "latency of ok ops (ms)"
	bottom.X.Tick.Marker = plot.TickerFunc(plainTicks)
	bottom.Y.Scale = plot.LogScale{}
	bottom.Y.Tick.Marker = plot.TickerFunc(logTicks)
	lmin, lmax := 1.0, 1000.0
	if len(tl.lat) > 0 {
		lmin = math.Pow10(int(math.Floor(math.Log10(tl.latMin))))
		lmax = math.Pow10(int(math.Ceil(math.Log10(tl.latMax))))
		if lmax <= lmin {
			lmax = lmin * 10
		}
	}
	bottom.Add(&faultBands{spans: tl.spans})
	bottom.Add(plotter.NewGrid())
	if len(tl.lat) > 0 {
		if s, err := plotter.NewScatter(tl.lat); err == nil {
			s.GlyphStyle.Color = colorLat
			s.GlyphStyle.Radius = vg.Points(1)
			s.GlyphStyle.Shape = draw.CircleGlyph{}
			bottom.Add(s)
		}
	}
	for _, series := range []struct {
		segs []plotter.XYs
		clr  color.Color
	}{{tl.p50, colorP50}, {tl.p99, colorP99}} {
		for _, seg := range series.segs {
			l, err := plotter.NewLine(seg)
			if err != nil {
				continue
			}
			l.LineStyle.Color = series.clr
			l.LineStyle.Width = vg.Points(1.2)
			bottom.Add(l)
		}
	}
	bottom.X.Min, bottom.X.Max = tl.xmin, tl.xmax
	bottom.Y.Min, bottom.Y.Max = lmin, lmax
	return top, bottom
}

// plainTicks are plot.DefaultTicks labelled as plain numbers ("250", not
// "250.00").
func plainTicks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
		}
	}
	return ticks
}

// logTicks labels every decade of a log axis (as plain numbers) and marks
// 2..9 in between.
func logTicks(lo, hi float64) []plot.Tick {
	e0 := int(math.Floor(math.Log10(lo) + 1e-9))
	e1 := int(math.Ceil(math.Log10(hi) - 1e-9))
	var ticks []plot.Tick
	for e := e0; e <= e1; e++ {
		v := math.Pow10(e)
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
		if e < e1 {
			for i := 2; i < 10; i++ {
				ticks = append(ticks, plot.Tick{Value: v * float64(i)})
			}
		}
	}
	return ticks
}

// faultBands shades each fault window across the whole height of a panel.
type faultBands struct{ spans []faultSpan }

func (b *faultBands) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, s := range b.spans {
		x0, x1, ok := spanX(c, trX, s)
		if !ok {
			continue
		}
		c.FillPolygon(bandColor(s.family), []vg.Point{
			{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y},
		})
	}
}

// spanX is a span's extent on c, at least 1.5pt wide so that instantaneous
// faults (a kill, a clock step) stay visible.
func spanX(c draw.Canvas, trX func(float64) vg.Length, s faultSpan) (x0, x1 vg.Length, ok bool) {
	x0, x1 = trX(s.start), trX(s.end)
	if x1-x0 < vg.Points(1.5) {
		x1 = x0 + vg.Points(1.5)
	}
	x0, x1 = max(x0, c.Min.X), min(x1, c.Max.X)
	return x0, x1, x1 > x0
}

// faultLabels writes each fault's name at the top of its band, staggered
// over a few rows so that neighbouring labels do not overlap.
type faultLabels struct{ spans []faultSpan }

func (l *faultLabels) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	sty := textStyle(vg.Points(8), color.Black)
	lineH := sty.Height("Xg") + vg.Points(2)
	var rowEnd [maxLabelRows]vg.Length
	for i := range rowEnd {
		rowEnd[i] = c.Min.X - 1
	}
	for _, s := range l.spans {
		x0, _, ok := spanX(c, trX, s)
		if !ok {
			continue
		}
		name := trimLine(s.name, 48)
		w := sty.Width(name)
		x := x0 + vg.Points(2)
		if x+w > c.Max.X-vg.Points(2) {
			x = max(c.Max.X-vg.Points(2)-w, c.Min.X)
		}
		row := 0
		for r := range rowEnd {
			if rowEnd[r] < x {
				row = r
				break
			}
			if rowEnd[r] < rowEnd[row] {
				row = r
			}
		}
		rowEnd[row] = x + w + vg.Points(4)
		y := c.Max.Y - vg.Points(2) - vg.Length(row)*lineH
		c.FillPolygon(color.NRGBA{R: 0xff, G: 0xff, B: 0xff, A: 0xc0}, []vg.Point{
			{X: x - 1, Y: y - lineH + 2}, {X: x + w + 1, Y: y - lineH + 2},
			{X: x + w + 1, Y: y + 1}, {X: x - 1, Y: y + 1},
		})
		sty.Color = darken(familyColor(s.family))
		c.FillText(sty, vg.Point{X: x, Y: y}, name)
	}
}

func darken(c color.NRGBA) color.NRGBA {
	return color.NRGBA{R: c.R * 3 / 4, G: c.G * 3 / 4, B: c.B * 3 / 4, A: 0xff}
}

// legendItem is one entry of the legend strip: a thumbnail (nil: text
// only) and its label.
type legendItem struct {
	thumb plot.Thumbnailer
	label string
}

type swatch struct{ clr color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(s.clr, []vg.Point{
		c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y},
	})
}

func (tl *timeline) legendItems() []legendItem {
	line := func(clr color.Color) plot.Thumbnailer {
		return &plotter.Line{LineStyle: draw.LineStyle{Color: clr, Width: vg.Points(2)}}
	}
	dot := &plotter.Scatter{GlyphStyle: draw.GlyphStyle{
		Color: color.NRGBA{R: colorLat.R, G: colorLat.G, B: colorLat.B, A: 0xb0}, Radius: vg.Points(2), Shape: draw.CircleGlyph{},
	}}
	items := []legendItem{
		{nil, "throughput:"},
		{line(colorOK), "ok"},
		{line(colorFail), "fail"},
		{line(colorInfo), "info"},
		{nil, "   latency:"},
		{dot, "ok op"},
		{line(colorP50), "p50"},
		{line(colorP99), "p99"},
		{nil, "   faults:"},
	}
	if len(tl.families) == 0 {
		items = append(items, legendItem{nil, "none"})
	}
	for _, f := range tl.families {
		c := bandColor(f)
		c.A = 0x80
		items = append(items, legendItem{swatch{c}, f})
	}
	return items
}

// drawLegendStrip lays items out left to right between x0 and x1 starting
// at y (top), wrapping as needed, and returns the y below the strip.
func drawLegendStrip(c draw.Canvas, items []legendItem, x0, x1, y vg.Length) vg.Length {
	sty := textStyle(vg.Points(10), color.Black)
	h := sty.Height("Xg")
	thumbW := vg.Points(16)
	gap := vg.Points(4)
	x := x0
	for _, it := range items {
		w := sty.Width(it.label)
		if it.thumb != nil {
			w += thumbW + gap
		}
		if x > x0 && x+w > x1 {
			x = x0
			y -= h + vg.Points(3)
		}
		tx := x
		if it.thumb != nil {
			tc := draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
				Min: vg.Point{X: x, Y: y - h + vg.Points(2)},
				Max: vg.Point{X: x + thumbW, Y: y - vg.Points(1)},
			}}
			it.thumb.Thumbnail(&tc)
			tx += thumbW + gap
		}
		c.FillText(sty, vg.Point{X: tx, Y: y}, it.label)
		x += w + vg.Points(10)
	}
	return y - h - vg.Points(4)
}

// ---------------------------------------------------------------------------
// Summary

// Summary is what the one-screen summary at the end of a run reports.
type Summary struct {
	// Name names the run; Seed is its random seed.
	Name string `json:"name"`
	Seed int64  `json:"seed"`
	// Duration is how long the workloads ran.
	Duration time.Duration `json:"duration"`
	// Nodes is the number of meridian processes; Placement describes how
	// the groups were placed on them ("3 groups x 3 replicas").
	Nodes     int    `json:"nodes"`
	Placement string `json:"placement,omitempty"`
	// Workloads are the op counts per workload (CountWorkloads).
	Workloads []WorkloadCount `json:"workloads"`
	// Verdicts are the checkers' verdicts.
	Verdicts []Verdict `json:"verdicts"`
	// Faults are the nemesis windows of the run.
	Faults []Fault `json:"faults"`
	// Replay is the command that replays this run (same seed, same
	// schedule).
	Replay string `json:"replay,omitempty"`
}

// WorkloadCount counts a workload's ops by how they ended.
type WorkloadCount struct {
	Workload string `json:"workload"`
	OK       int    `json:"ok"`
	Fail     int    `json:"fail"`
	Info     int    `json:"info"`
}

// CountWorkloads counts ops per workload and type, workloads sorted by
// name. An op whose Type is none of OK, Fail, Info counts as Info.
func CountWorkloads(ops []Op) []WorkloadCount {
	idx := map[string]int{}
	var out []WorkloadCount
	for i := range ops {
		j, ok := idx[ops[i].Workload]
		if !ok {
			j = len(out)
			idx[ops[i].Workload] = j
			out = append(out, WorkloadCount{Workload: ops[i].Workload})
		}
		switch ops[i].Type {
		case OK:
			out[j].OK++
		case Fail:
			out[j].Fail++
		default:
			out[j].Info++
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Workload < out[b].Workload })
	return out
}

// Valid reports whether every checker found the history valid.
func (s Summary) Valid() bool { return len(s.Invalid()) == 0 }

// Invalid lists the checkers whose verdict is invalid, in verdict order.
func (s Summary) Invalid() []string {
	var out []string
	for _, v := range s.Verdicts {
		if !v.Valid {
			out = append(out, v.Checker)
		}
	}
	return out
}

// maxSummaryAnomalies is how many anomaly messages the summary shows per
// checker; maxMessage how many characters of each.
const (
	maxSummaryAnomalies = 3
	maxMessage          = 110
)

// WriteSummary writes the one-screen text summary of a run: the run line,
// ops per workload, each checker's verdict (anomaly counts by kind and the
// first few messages), faults and recovery times per family, and a final
// "VALID" or "INVALID: <checkers>" line followed, when invalid, by the
// replay command.
func WriteSummary(w io.Writer, s Summary) error {
	var b bytes.Buffer

	// Run line.
	name := s.Name
	if name == "" {
		name = "(unnamed)"
	}
	parts := []string{"run " + name, fmt.Sprintf("seed %d", s.Seed), "duration " + fmtDuration(int64(s.Duration))}
	if s.Nodes > 0 {
		parts = append(parts, fmt.Sprintf("nodes %d", s.Nodes))
	}
	if s.Placement != "" {
		parts = append(parts, "placement "+s.Placement)
	}
	b.WriteString(strings.Join(parts, "  ") + "\n\n")

	// Workloads.
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tOK\tFAIL\tINFO")
	var tot WorkloadCount
	for _, wc := range s.Workloads {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", wc.Workload, wc.OK, wc.Fail, wc.Info)
		tot.OK += wc.OK
		tot.Fail += wc.Fail
		tot.Info += wc.Info
	}
	if len(s.Workloads) == 0 {
		fmt.Fprintln(tw, "(no ops)")
	} else if len(s.Workloads) > 1 {
		fmt.Fprintf(tw, "total\t%d\t%d\t%d\n", tot.OK, tot.Fail, tot.Info)
	}
	tw.Flush()
	b.WriteString("\n")

	// Checkers.
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECKER\tVERDICT\tDETAIL")
	if len(s.Verdicts) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	for _, v := range s.Verdicts {
		if v.Valid {
			detail := ""
			if v.Note != "" {
				detail = "note: " + trimLine(v.Note, maxMessage)
			}
			fmt.Fprintf(tw, "%s\tvalid\t%s\n", v.Checker, detail)
			continue
		}
		fmt.Fprintf(tw, "%s\tINVALID\t%s\n", v.Checker, anomalyCounts(v.Anomalies))
		for i, a := range v.Anomalies {
			if i == maxSummaryAnomalies {
				fmt.Fprintf(tw, "\t\t... %d more in check-%s.json\n", len(v.Anomalies)-i, fileSafe(v.Checker))
				break
			}
			fmt.Fprintf(tw, "\t\t- %s\n", trimLine(a.Kind+": "+a.Message, maxMessage))
		}
		if v.Note != "" {
			fmt.Fprintf(tw, "\t\tnote: %s\n", trimLine(v.Note, maxMessage))
		}
	}
	tw.Flush()
	b.WriteString("\n")

	// Faults.
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULTS\tCOUNT\tRECOVERY p50\tRECOVERY max\tSTALLED")
	byFamily := map[string][]Fault{}
	seen := map[string]bool{}
	for _, f := range faultFamilies {
		seen[f] = true
	}
	for _, f := range s.Faults {
		byFamily[f.Family] = append(byFamily[f.Family], f)
		seen[f.Family] = true
	}
	for _, fam := range orderFamilies(seen) {
		fs := byFamily[fam]
		var rec []int64
		stalled := map[uint64]bool{}
		for _, f := range fs {
			for _, d := range f.Recovery {
				rec = append(rec, d)
			}
			for _, g := range f.Stalled {
				stalled[g] = true
			}
		}
		p50, pmax := "-", "-"
		if len(rec) > 0 {
			slices.Sort(rec)
			p50 = fmtDuration(medianInt(rec))
			pmax = fmtDuration(rec[len(rec)-1])
		}
		st := "-"
		if len(stalled) > 0 {
			gs := make([]uint64, 0, len(stalled))
			for g := range stalled {
				gs = append(gs, g)
			}
			slices.Sort(gs)
			ss := make([]string, len(gs))
			for i, g := range gs {
				ss[i] = strconv.FormatUint(g, 10)
			}
			st = "groups " + strings.Join(ss, ",")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", fam, len(fs), p50, pmax, st)
	}
	tw.Flush()
	b.WriteString("\n")

	// Verdict.
	if bad := s.Invalid(); len(bad) > 0 {
		fmt.Fprintf(&b, "INVALID: %s\n", strings.Join(bad, ", "))
		replay := s.Replay
		if replay == "" {
			replay = "(no replay command recorded)"
		}
		fmt.Fprintf(&b, "replay: %s\n", replay)
	} else if len(s.Verdicts) == 0 {
		b.WriteString("VALID (no checkers ran)\n")
	} else {
		b.WriteString("VALID\n")
	}
	// tabwriter pads cells before an empty last one; drop that padding.
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}

// anomalyCounts is "N anomalies: kind n, kind n" (most frequent first).
func anomalyCounts(as []Anomaly) string {
	if len(as) == 0 {
		return "no anomalies listed"
	}
	n := map[string]int{}
	var kinds []string
	for _, a := range as {
		if n[a.Kind] == 0 {
			kinds = append(kinds, a.Kind)
		}
		n[a.Kind]++
	}
	sort.SliceStable(kinds, func(i, j int) bool { return n[kinds[i]] > n[kinds[j]] })
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, n[k])
	}
	word := "anomalies"
	if len(as) == 1 {
		word = "anomaly"
	}
	return trimLine(fmt.Sprintf("%d %s: %s", len(as), word, strings.Join(parts, ", ")), maxMessage)
}

// medianInt is the median of sorted v (non-empty); the mean of the two
// middle values for an even count.
func medianInt(v []int64) int64 {
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return v[n/2-1] + (v[n/2]-v[n/2-1])/2
}

// fmtDuration prints nanoseconds rounded to a readable precision.
func fmtDuration(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d == 0:
		return "0s"
	case d >= time.Minute || d <= -time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second || d <= -time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond || d <= -time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// trimLine collapses whitespace (newlines included) and cuts s to n runes.
func trimLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}

// ---------------------------------------------------------------------------
// Run directory

// RunFiles is everything WriteRunDir writes about a run.
type RunFiles struct {
	History  []Op
	Faults   []Fault
	Verdicts []Verdict
	Summary  Summary
	// Logs are the nodes' logs, by node name.
	Logs map[string][]byte
	// Title heads the timeline plot (default: the run's name).
	Title string
}

// CheckFile is the content of a check-<checker>.json file: the verdict,
// with each anomaly's ops copied from the history.
type CheckFile struct {
	Checker   string           `json:"checker"`
	Valid     bool             `json:"valid"`
	Anomalies []AnomalyExcerpt `json:"anomalies,omitempty"`
	Stats     map[string]int   `json:"stats,omitempty"`
	Note      string           `json:"note,omitempty"`
}

// AnomalyExcerpt is an anomaly with the excerpt of the history it names:
// the full Op records of Anomaly.Ops, in that order. Missing lists the
// indexes that are not in the history.
type AnomalyExcerpt struct {
	Anomaly
	Excerpt []Op  `json:"excerpt"`
	Missing []int `json:"missing,omitempty"`
}

// newCheckFile builds the check file of v against history.
func newCheckFile(v Verdict, byIndex map[int]*Op) CheckFile {
	cf := CheckFile{Checker: v.Checker, Valid: v.Valid, Stats: v.Stats, Note: v.Note}
	for _, a := range v.Anomalies {
		ae := AnomalyExcerpt{Anomaly: a, Excerpt: []Op{}}
		for _, i := range a.Ops {
			if op, ok := byIndex[i]; ok {
				ae.Excerpt = append(ae.Excerpt, *op)
			} else {
				ae.Missing = append(ae.Missing, i)
			}
		}
		cf.Anomalies = append(cf.Anomalies, ae)
	}
	return cf
}

// Names of the files WriteRunDir writes.
const (
	historyFile  = "history.jsonl"
	faultsFile   = "faults.json"
	verdictsFile = "verdicts.json"
	summaryFile  = "summary.txt"
	svgFile      = "timeline.svg"
	pngFile      = "timeline.png"
	readmeFile   = "README.md"
	logsDir      = "logs"
)

// CheckFileName is the name of a checker's file in a run directory.
func CheckFileName(checker string) string { return "check-" + fileSafe(checker) + ".json" }

// LogFileName is the path of a node's log in a run directory.
func LogFileName(node string) string { return filepath.Join(logsDir, fileSafe(node)+".log") }

// fileSafe maps a name to a file name component: letters, digits, '.',
// '_' and '-' are kept, anything else becomes '_'.
func fileSafe(name string) string {
	if name == "" {
		return "_"
	}
	b := []byte(name)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	s := string(b)
	if s == "." || s == ".." {
		s = strings.Repeat("_", len(s))
	}
	return s
}

// WriteRunDir writes a run's files into dir (created if needed):
// history.jsonl, faults.json, check-<checker>.json per verdict (with the
// ops each anomaly names), verdicts.json, summary.txt, logs/<node>.log,
// timeline.svg, timeline.png and a README.md indexing them. It writes
// every file it can and returns the errors of those it could not.
func WriteRunDir(dir string, r RunFiles) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	add(writeFileWith(path(historyFile), func(w io.Writer) error { return WriteHistory(w, r.History) }))

	faults := r.Faults
	if faults == nil {
		faults = []Fault{}
	}
	add(writeJSON(path(faultsFile), faults))

	byIndex := make(map[int]*Op, len(r.History))
	for i := range r.History {
		byIndex[r.History[i].Index] = &r.History[i]
	}
	checkFiles := make([]string, len(r.Verdicts))
	used := map[string]int{}
	for i, v := range r.Verdicts {
		name := CheckFileName(v.Checker)
		if n := used[name]; n > 0 { // two verdicts of one checker
			name = strings.TrimSuffix(name, ".json") + fmt.Sprintf("-%d.json", n+1)
		}
		used[CheckFileName(v.Checker)]++
		checkFiles[i] = name
		add(writeJSON(path(name), newCheckFile(v, byIndex)))
	}

	verdicts := r.Verdicts
	if verdicts == nil {
		verdicts = []Verdict{}
	}
	add(writeJSON(path(verdictsFile), verdicts))

	var summary bytes.Buffer
	add(WriteSummary(&summary, r.Summary))
	add(os.WriteFile(path(summaryFile), summary.Bytes(), 0o644))

	nodes := make([]string, 0, len(r.Logs))
	for n := range r.Logs {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	if len(nodes) > 0 {
		add(os.MkdirAll(path(logsDir), 0o755))
	}
	for _, n := range nodes {
		add(os.WriteFile(path(LogFileName(n)), r.Logs[n], 0o644))
	}

	title := r.Title
	if title == "" {
		title = r.Summary.Name
	}
	add(PlotTimeline(r.History, r.Faults, title, path(svgFile), path(pngFile)))

	add(os.WriteFile(path(readmeFile), runReadme(r, checkFiles, nodes, summary.String()), 0o644))
	return errors.Join(errs...)
}

// runReadme is the README.md of a run directory.
func runReadme(r RunFiles, checkFiles, nodes []string, summary string) []byte {
	s := r.Summary
	var b bytes.Buffer
	name := s.Name
	if name == "" {
		name = "(unnamed)"
	}
	fmt.Fprintf(&b, "# Chaos run %s\n\n", name)
	if bad := s.Invalid(); len(bad) > 0 {
		fmt.Fprintf(&b, "**Verdict: INVALID** (%s)\n\n", strings.Join(bad, ", "))
	} else if len(s.Verdicts) == 0 {
		b.WriteString("**Verdict: VALID** (no checkers ran)\n\n")
	} else {
		b.WriteString("**Verdict: VALID**\n\n")
	}
	fmt.Fprintf(&b, "- seed: `%d`\n", s.Seed)
	fmt.Fprintf(&b, "- duration: %s\n", fmtDuration(int64(s.Duration)))
	if s.Nodes > 0 {
		fmt.Fprintf(&b, "- nodes: %d\n", s.Nodes)
	}
	if s.Placement != "" {
		fmt.Fprintf(&b, "- placement: %s\n", s.Placement)
	}
	fmt.Fprintf(&b, "- ops: %d, faults: %d\n", len(r.History), len(r.Faults))
	if s.Replay != "" {
		fmt.Fprintf(&b, "- replay: `%s`\n", s.Replay)
	} else {
		b.WriteString("- replay: (no replay command recorded)\n")
	}

	b.WriteString("\n## Files\n\n| file | what it is |\n|---|---|\n")
	row := func(file, what string) { fmt.Fprintf(&b, "| `%s` | %s |\n", file, what) }
	row(readmeFile, "this index")
	row(summaryFile, "the text summary printed at the end of the run (reproduced below)")
	row(historyFile, "the history: every client operation, one JSON object a line (index, process, workload, f, "+
		"type ok/fail/info, invoke and complete in wall-clock ns, ts, node, mops, error); `chaos.ReadHistory` reads it")
	row(faultsFile, "the nemesis windows: family, name, nodes, start and end (wall-clock ns), "+
		"recovery per group (ns without a write after start) and stalled groups")
	row(verdictsFile, "every checker's verdict: valid, anomalies (kind, message, op indexes), stats, note")
	for i, v := range r.Verdicts {
		what := "valid"
		if !v.Valid {
			what = fmt.Sprintf("INVALID: %d anomalies", len(v.Anomalies))
		}
		row(checkFiles[i], fmt.Sprintf("checker %s (%s): its verdict, each anomaly with an `excerpt` of the full ops it names", v.Checker, what))
	}
	for _, n := range nodes {
		row(filepath.ToSlash(LogFileName(n)), "log of node "+n)
	}
	row(svgFile, "timeline: throughput per op type (top) and latency of ok ops (bottom, log scale) "+
		"against seconds since the first op, fault windows shaded by family")
	row(pngFile, "the same timeline as a PNG")

	b.WriteString("\n## Summary\n\n```\n")
	b.WriteString(summary)
	b.WriteString("```\n\n![timeline](" + pngFile + ")\n")
	return b.Bytes()
}

// writeFileWith creates path and writes it with fn through a buffer.
func writeFileWith(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	err = fn(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeJSON writes v as indented JSON.
func writeJSON(path string, v any) error {
	return writeFileWith(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	})
}
