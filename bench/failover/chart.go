package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// classColor is the colour of each outcome class in the charts.
var classColor = map[string]color.Color{
	classOK:       color.RGBA{R: 60, G: 110, B: 200, A: 255},
	classRetried:  color.RGBA{R: 0, G: 160, B: 90, A: 255},
	classUnknown:  color.RGBA{R: 230, G: 120, B: 0, A: 255},
	classNotSent:  color.RGBA{R: 150, G: 60, B: 180, A: 255},
	classServer:   color.RGBA{R: 120, G: 120, B: 120, A: 255},
	classDeadline: color.RGBA{R: 0, G: 0, B: 0, A: 255},
	classFailed:   color.RGBA{R: 220, G: 30, B: 30, A: 255},
}

var faultColor = color.RGBA{R: 220, G: 30, B: 30, A: 255}

// drawChart draws, for each side, latency of every call over time (log
// scale, coloured by outcome) and acknowledged writes per second, with the
// fault at t = 0. The sides share their axes.
func drawChart(path string, o options, runs []sideRun) error {
	const msMin = 0.1
	maxLat, maxRate := 10.0, 10.0
	for _, r := range runs {
		for _, c := range r.calls {
			maxLat = max(maxLat, float64(c.latency)/1e6)
		}
		for _, v := range rateSeries(r, o) {
			maxRate = max(maxRate, v.Y)
		}
	}
	xMin, xMax := -o.before.Seconds(), o.after.Seconds()

	var rowsOfPlots [][]*plot.Plot
	for _, r := range runs {
		lat := plot.New()
		s := r.summary
		lat.Title.Text = fmt.Sprintf("%s — %s of A at t=0: first ack elsewhere %s, stall %s, lost %d, doubled %d",
			r.name, o.fault, fmtDur(s.FirstSuccessElsewhere), fmtDur(s.Stall), s.Lost, s.Doubled)
		lat.Title.TextStyle.Font.Size = vg.Points(9)
		lat.X.Label.Text = "call start, seconds from the fault"
		lat.Y.Label.Text = "latency (ms, log)"
		lat.Y.Scale = plot.LogScale{}
		lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		lat.X.Min, lat.X.Max = xMin, xMax
		lat.Y.Min, lat.Y.Max = msMin, maxLat*6
		lat.Add(plotter.NewGrid())
		byClass := map[string]plotter.XYs{}
		for _, c := range r.calls {
			byClass[c.class] = append(byClass[c.class], plotter.XY{
				X: (c.start - r.faultAt).Seconds(),
				Y: max(msMin, float64(c.latency)/1e6),
			})
		}
		for _, cl := range classes {
			pts := byClass[cl]
			if len(pts) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return err
			}
			sc.GlyphStyle.Color = classColor[cl]
			sc.GlyphStyle.Radius = vg.Points(1.2)
			sc.GlyphStyle.Shape = draw.CircleGlyph{}
			if !acked(cl) {
				sc.GlyphStyle.Radius = vg.Points(2.5)
				sc.GlyphStyle.Shape = draw.CrossGlyph{}
			}
			lat.Add(sc)
			lat.Legend.Add(fmt.Sprintf("%s (%d)", cl, len(pts)), sc)
		}
		if err := addFaultLine(lat, msMin, maxLat*6); err != nil {
			return err
		}
		lat.Legend.Top = true
		lat.Legend.TextStyle.Font.Size = vg.Points(7)

		thr := plot.New()
		thr.Title.Text = r.name + ": acknowledged writes per second (100 ms bins)"
		thr.Title.TextStyle.Font.Size = vg.Points(9)
		thr.X.Label.Text = "seconds from the fault"
		thr.Y.Label.Text = "writes/s"
		thr.X.Min, thr.X.Max = xMin, xMax
		thr.Y.Min, thr.Y.Max = 0, maxRate*1.3
		thr.Y.Tick.Marker = integerTicks{}
		thr.Add(plotter.NewGrid())
		ln, err := plotter.NewLine(rateSeries(r, o))
		if err != nil {
			return err
		}
		ln.StepStyle = plotter.PostStep
		ln.Color = classColor[classOK]
		thr.Add(ln)
		if err := addFaultLine(thr, 0, maxRate*1.3); err != nil {
			return err
		}
		rowsOfPlots = append(rowsOfPlots, []*plot.Plot{lat, thr})
	}

	w, h := 11*vg.Inch, vg.Length(len(runs))*3.4*vg.Inch
	var c vg.CanvasWriterTo
	if strings.EqualFold(filepath.Ext(path), ".svg") {
		c = vgsvg.New(w, h)
	} else {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(90))}
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(runs), Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(rowsOfPlots, tiles, dc)
	for i := range rowsOfPlots {
		for j := range rowsOfPlots[i] {
			rowsOfPlots[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// addFaultLine marks t = 0.
func addFaultLine(p *plot.Plot, yMin, yMax float64) error {
	l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: yMin}, {X: 0, Y: yMax}})
	if err != nil {
		return err
	}
	l.Color = faultColor
	l.Width = vg.Points(1.2)
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l)
	p.Legend.Add("fault", l)
	return nil
}

// rateSeries is acknowledged writes per second in 100 ms bins of
// acknowledgement time, relative to the fault.
func rateSeries(r sideRun, o options) plotter.XYs {
	const bin = 100 * time.Millisecond
	first := -o.before
	n := int((o.before + o.after) / bin)
	counts := make([]int, n)
	for _, c := range r.calls {
		if !acked(c.class) {
			continue
		}
		k := int((c.end() - r.faultAt - first) / bin)
		if k >= 0 && k < n {
			counts[k]++
		}
	}
	xys := make(plotter.XYs, n)
	for k := range counts {
		xys[k] = plotter.XY{X: (first + time.Duration(k)*bin).Seconds(), Y: float64(counts[k]) / bin.Seconds()}
	}
	return xys
}

// integerTicks labels an axis with round whole numbers.
type integerTicks struct{}

// Ticks returns about five labelled ticks between lo and hi.
func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1.0
	for _, m := range []float64{1, 2, 5} {
		for e := 1.0; e < 1e9; e *= 10 {
			if s := m * e; (hi-lo)/s <= 6 {
				if step == 1 || s < step {
					step = s
				}
				break
			}
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
	}
	return ticks
}
