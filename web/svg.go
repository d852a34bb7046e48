package web

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/nii-uk/nii/node/api"
)

// Charts are drawn on the server as SVG (numbers and text the templates
// escape, no script, no inline style), so they need no JavaScript and pass
// the pages' CSP. Each comes with its figures as a table too.

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// svgHeat is the coverage matrix: a row per publisher, a column per
// month, each cell coloured by its reject rate and labelled with its rows.
type svgHeat struct {
	Width, Height int
	Months        []svgLabel
	Publishers    []svgLabel
	Cells         []svgCell
	Legend        []svgCell
	Summary       string
}

type svgLabel struct {
	X, Y int
	Text string
}

type svgCell struct {
	X, Y, W, H   int
	TX, TY       int
	Fill, Label  string
	Title        string
	Publisher    string
	Month        string
	Rows, Reject int64
	Amount       string
	RejectRate   float64
}

const (
	heatLeft   = 130
	heatTop    = 70
	heatCellW  = 64
	heatCellH  = 36
	heatLegend = 40
)

// rejectBands colour a reject rate; every fill is light enough for black
// text at WCAG AA contrast.
var rejectBands = []struct {
	Upto  float64
	Fill  string
	Label string
}{
	{0, "#cce2d8", "no rejects"},
	{0.01, "#e5f2c9", "under 1%"},
	{0.05, "#fff2b3", "1 to 5%"},
	{0.2, "#fcd6c3", "5 to 20%"},
	{math.Inf(1), "#f6bfc4", "over 20%"},
}

func rejectFill(rate float64) string {
	for _, b := range rejectBands {
		if rate <= b.Upto {
			return b.Fill
		}
	}
	return rejectBands[len(rejectBands)-1].Fill
}

func heatMap(cells []api.CoverageCell) *svgHeat {
	pubSet, monSet := map[string]bool{}, map[string]bool{}
	for _, c := range cells {
		pubSet[c.Publisher] = true
		monSet[c.Month] = true
	}
	pubs, months := sortedKeys(pubSet), sortedKeys(monSet)
	pi, mi := index(pubs), index(months)
	h := &svgHeat{
		Width:  heatLeft + heatCellW*len(months) + 10,
		Height: heatTop + heatCellH*len(pubs) + heatLegend + 20,
	}
	for i, m := range months {
		label := m
		if label == "" {
			label = "no date"
		}
		h.Months = append(h.Months, svgLabel{X: heatLeft + i*heatCellW + heatCellW/2, Y: heatTop - 10, Text: label})
	}
	for i, p := range pubs {
		h.Publishers = append(h.Publishers, svgLabel{X: heatLeft - 8, Y: heatTop + i*heatCellH + heatCellH/2 + 5, Text: p})
	}
	var rows int64
	for _, c := range cells {
		x, y := heatLeft+mi[c.Month]*heatCellW, heatTop+pi[c.Publisher]*heatCellH
		rows += c.Rows
		h.Cells = append(h.Cells, svgCell{
			X: x + 1, Y: y + 1, W: heatCellW - 2, H: heatCellH - 2, TX: x + heatCellW/2, TY: y + heatCellH/2 + 5,
			Fill: rejectFill(c.RejectRate), Label: compact(c.Rows),
			Title:     fmt.Sprintf("%s, %s: %d rows, total %s, %.1f%% rejected", c.Publisher, monthOr(c.Month), c.Rows, c.Amount, 100*c.RejectRate),
			Publisher: c.Publisher, Month: monthOr(c.Month), Rows: c.Rows, Reject: c.Rejected, Amount: c.Amount, RejectRate: c.RejectRate,
		})
	}
	ly := heatTop + heatCellH*len(pubs) + 20
	for i, b := range rejectBands {
		h.Legend = append(h.Legend, svgCell{X: 10 + i*110, Y: ly, W: 16, H: 16, TX: 10 + i*110 + 22, TY: ly + 13, Fill: b.Fill, Label: b.Label})
	}
	h.Width = max(h.Width, 10+len(rejectBands)*110)
	h.Summary = fmt.Sprintf("%d publishers over %d months, %d rows", len(pubs), len(months), rows)
	return h
}

func monthOr(m string) string {
	if m == "" {
		return "no date"
	}
	return m
}

func compact(n int64) string {
	switch {
	case n >= 1_000_000:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	case n >= 10_000:
		return strconv.FormatInt(n/1000, 10) + "k"
	}
	return strconv.FormatInt(n, 10)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func index(s []string) map[string]int {
	m := make(map[string]int, len(s))
	for i, v := range s {
		m[v] = i
	}
	return m
}

// svgChart is a horizontal bar chart of a query result: a label column
// (a date or a category) against a number column.
type svgChart struct {
	Width, Height int
	LabelCol      string
	ValueCol      string
	Bars          []svgBar
	Omitted       int
}

type svgBar struct {
	Y, W     int
	TY       int
	Label    string
	Value    string
	ValueX   int
	Negative bool
}

const (
	chartLeft = 200
	chartBarW = 460
	chartBarH = 22
	chartMax  = 40
)

func numericType(t string) bool { return t == "integer" || t == "number" || t == "decimal" }

// chartFor picks the result's first date or text column and its first
// number column; nil when it has not both.
func chartFor(res *api.QueryResult) *svgChart {
	lc, vc := -1, -1
	for i, c := range res.Columns {
		switch {
		case lc < 0 && (c.Type == "date" || c.Type == "datetime" || c.Type == "string"):
			lc = i
		case vc < 0 && numericType(c.Type):
			vc = i
		}
	}
	if lc < 0 || vc < 0 || len(res.Rows) == 0 {
		return nil
	}
	ch := &svgChart{LabelCol: res.Columns[lc].Name, ValueCol: res.Columns[vc].Name}
	type pt struct {
		label string
		v     float64
		text  string
	}
	var pts []pt
	for _, row := range res.Rows {
		f, err := strconv.ParseFloat(cellText(row[vc]), 64)
		if err != nil {
			continue
		}
		pts = append(pts, pt{cellText(row[lc]), f, cellText(row[vc])})
	}
	if len(pts) == 0 {
		return nil
	}
	if t := res.Columns[lc].Type; t == "date" || t == "datetime" {
		sort.SliceStable(pts, func(i, j int) bool { return pts[i].label < pts[j].label })
	}
	if len(pts) > chartMax {
		ch.Omitted = len(pts) - chartMax
		pts = pts[:chartMax]
	}
	var top float64
	for _, p := range pts {
		top = max(top, math.Abs(p.v))
	}
	for i, p := range pts {
		w := 0
		if top > 0 {
			w = int(math.Round(math.Abs(p.v) / top * chartBarW))
		}
		label := p.label
		if len([]rune(label)) > 28 {
			label = string([]rune(label)[:27]) + "…"
		}
		y := 10 + i*chartBarH
		ch.Bars = append(ch.Bars, svgBar{Y: y, W: max(w, 1), TY: y + chartBarH/2 + 5, Label: label, Value: p.text, ValueX: chartLeft + max(w, 1) + 6, Negative: p.v < 0})
	}
	ch.Width = chartLeft + chartBarW + 120
	ch.Height = 20 + len(pts)*chartBarH
	return ch
}
