package web

import (
	"fmt"
	"strconv"
	"time"

	"github.com/locksmithhq/locksmith/web/views"
)

// The console's charts (calls per day on Overview, decisions per day on
// Audit) are one bar chart: a bar per UTC day, each the stack of the
// chart's series, laid out here and drawn by the views' barChart.

// Chart geometry, in SVG user units.
const (
	chartW, chartH             = 640, 200
	chartLeft, chartRight      = 44, 628
	chartTop, chartBottom      = 12, 172
	chartXLabelY, chartYLabelX = 190, 38
)

// chartData is what a bar chart shows: Values[i][s] is series s on
// Days[i], and BarLabel(i) is day i's tooltip.
type chartData struct {
	Days     []time.Time
	Values   [][]int
	BarLabel func(i int) string
}

// layoutBars lays c's bars out for d, c's ID and Series already set: a
// y axis (0, half, the tallest stack rounded up to a readable number), a
// bar per day stacking its series bottom first, and up to five day labels.
// Days that sum to zero have no segments; if every day does, c has no
// bars at all (the caller shows its empty state instead).
func layoutBars(c *views.Chart, d chartData) {
	peak := 0
	for _, vs := range d.Values {
		sum := 0
		for _, v := range vs {
			sum += v
		}
		peak = max(peak, sum)
	}
	if peak == 0 {
		return
	}
	top := niceCeil(peak)
	c.ViewBox = fmt.Sprintf("0 0 %d %d", chartW, chartH)
	c.Left, c.Right, c.Top, c.Bottom = itoa(chartLeft), itoa(chartRight), itoa(chartTop), itoa(chartBottom)
	plotH := float64(chartBottom - chartTop)
	for i, v := range []int{0, top / 2, top} {
		if i == 1 && (v == 0 || v == top) {
			continue
		}
		y := float64(chartBottom) - plotH*float64(v)/float64(top)
		c.YTicks = append(c.YTicks, views.Tick{X: itoa(chartYLabelX), Y: ftoa(y), Label: strconv.Itoa(v)})
	}
	slot := float64(chartRight-chartLeft) / float64(len(d.Days))
	barW := slot * 0.7
	labelEvery := max(1, (len(d.Days)+3)/4)
	for i, day := range d.Days {
		x := float64(chartLeft) + slot*float64(i) + (slot-barW)/2
		bar := views.Bar{X: ftoa(x), W: ftoa(barW), Label: d.BarLabel(i)}
		base, total := float64(chartBottom), 0
		for s, v := range d.Values[i] {
			total += v
			if v == 0 || s >= len(c.Series) {
				continue
			}
			h := plotH * float64(v) / float64(top)
			base -= h
			seg := views.Segment{Y: ftoa(base), H: ftoa(h), Class: "bar"}
			if sr := c.Series[s]; sr.Pattern != "" {
				seg.Fill = "url(#" + c.PatternID(sr) + ")"
			} else {
				seg.Class += " tone-" + sr.Tone
			}
			bar.Segments = append(bar.Segments, seg)
		}
		h := plotH * float64(total) / float64(top)
		bar.Y, bar.H = ftoa(float64(chartBottom)-h), ftoa(h)
		c.Bars = append(c.Bars, bar)
		// Every labelEvery-th day, and the last day (today) always; a
		// regular label too close to the last one is left out so the two
		// don't collide.
		last := len(d.Days) - 1
		if i == last || (i%labelEvery == 0 && last-i >= (labelEvery+1)/2) {
			c.XTicks = append(c.XTicks, views.Tick{X: ftoa(x + barW/2), Y: itoa(chartXLabelY), Label: day.UTC().Format("2 Jan")})
		}
	}
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten (at least 1), so
// axis labels read well.
func niceCeil(n int) int {
	if n <= 1 {
		return 1
	}
	for p := 1; ; p *= 10 {
		for _, m := range []int{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
	}
}
