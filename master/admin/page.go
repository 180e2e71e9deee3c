package admin

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// The page is one html/template: the server renders it whole on "/", and
// renders its "live" part alone for the page's script, which swaps it in
// every 2 s. One template for both keeps the first paint and the refreshes
// identical, and all escaping in html/template. No external asset: the
// style and script are inline, allowed by their hashes in the CSP.
var (
	//go:embed page.html
	pageSrc string
	//go:embed page.css
	pageCSS string
	//go:embed page.js
	pageJS string

	pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
		"dur":   fmtDur,
		"bytes": fmtBytes,
		"secs":  fmtSecs,
		"p99":   fmtP99,
		"rate":  func(r float64) string { return fmt.Sprintf("%.1f", r) },
		"join":  func(s []string) string { return strings.Join(s, ", ") },
		"upper": strings.ToUpper,
		"sum5":  sum5,
		"any5":  func(a [5]uint64) bool { return sum5(a) > 0 },
	}).Parse(pageSrc))

	// pageCSP allows nothing but the inline style and script and the
	// script's fetches to this origin.
	pageCSP = fmt.Sprintf("default-src 'none'; style-src '%s'; script-src '%s'; connect-src 'self'; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'", sriHash(pageCSS), sriHash(pageJS))
)

type pageData struct {
	CSS    template.CSS
	JS     template.JS
	Status *Status
}

func sriHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// renderPage writes the whole page, or only its live part (fragment).
func renderPage(w io.Writer, st *Status, fragment bool) error {
	if fragment {
		return pageTmpl.ExecuteTemplate(w, "live", st)
	}
	return pageTmpl.ExecuteTemplate(w, "page", pageData{CSS: template.CSS(pageCSS), JS: template.JS(pageJS), Status: st})
}

// fmtDur prints an uptime like `-s status` does, with days for long ones:
// 45s, 3m4s, 2h0m5s, 12d3h4m.
func fmtDur(sec int64) string {
	if sec < 86400 {
		return (time.Duration(sec) * time.Second).String()
	}
	return fmt.Sprintf("%dd%dh%dm", sec/86400, sec%86400/3600, sec%3600/60)
}

func fmtBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func fmtSecs(s float64) string {
	switch {
	case s <= 0:
		return "0"
	case s < 1:
		return fmt.Sprintf("%.1f ms", s*1000)
	default:
		return fmt.Sprintf("%.2f s", s)
	}
}

func fmtP99(l LatencySummary) string {
	switch {
	case l.Count == 0:
		return "-"
	case l.P99Seconds == 0:
		return fmt.Sprintf("> %gs", LatencyBuckets[len(LatencyBuckets)-1])
	default:
		return "≤ " + fmtSecs(l.P99Seconds)
	}
}
