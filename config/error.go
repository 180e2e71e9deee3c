package config

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// Error is a configuration that could not be loaded: every problem found in
// it, at once, as HCL diagnostics. Files holds the parsed sources so that
// Error() can quote the offending line.
type Error struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

// Error renders every diagnostic (warnings too, so the reader sees the whole
// picture) with hcl's text writer, in source order. Each one starts with
// "file:line,col: Error: summary", quotes the source line and marks the
// offending text with carets under it, then explains.
func (e *Error) Error() string {
	if e == nil || len(e.Diags) == 0 {
		return "invalid configuration"
	}
	parts := make([]string, 0, len(e.Diags))
	for _, d := range e.Diags {
		var buf bytes.Buffer
		writeDiagnostic(&buf, d, e.Files)
		parts = append(parts, strings.TrimRight(buf.String(), "\n"))
	}
	return strings.Join(parts, "\n\n")
}

// writeDiagnostic writes one diagnostic: a compiler-style position prefix,
// then hcl's text rendering with a caret marker added under the subject
// (without color, hcl's writer does not show where on the line it points).
func writeDiagnostic(buf *bytes.Buffer, d *hcl.Diagnostic, files map[string]*hcl.File) {
	if d.Subject != nil {
		fmt.Fprintf(buf, "%s:%d,%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
	}
	var text bytes.Buffer
	wr := hcl.NewDiagnosticTextWriter(&text, files, 0, false)
	if err := wr.WriteDiagnostic(d); err != nil {
		// Writing to a bytes.Buffer does not fail; keep the summary anyway.
		fmt.Fprintf(buf, "%s: %s\n", d.Summary, d.Detail)
		return
	}
	out := text.String()
	if d.Subject != nil {
		if f := files[d.Subject.Filename]; f != nil {
			out = insertMarker(out, *d.Subject, f.Bytes)
		}
	}
	buf.WriteString(out)
	if !strings.HasSuffix(out, "\n") {
		buf.WriteByte('\n')
	}
}

// insertMarker adds a line of carets under the quoted source line that holds
// the start of rng. The padding copies the tabs of the source line so the
// carets line up whatever the tab width.
func insertMarker(out string, rng hcl.Range, src []byte) string {
	start := rng.Start.Byte
	if start < 0 || start > len(src) {
		return out
	}
	lineStart := bytes.LastIndexByte(src[:start], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[start:], '\n'); i >= 0 {
		lineEnd = start + i
	}
	end := rng.End.Byte
	if end > lineEnd || end < start {
		end = lineEnd
	}
	var pad strings.Builder
	for _, r := range string(src[lineStart:start]) {
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	n := utf8.RuneCount(bytes.TrimRight(src[start:end], "\r"))
	if n < 1 {
		n = 1
	}
	quote := fmt.Sprintf("%4d: ", rng.Start.Line)
	marker := strings.Repeat(" ", len(quote)) + pad.String() + strings.Repeat("^", n)

	lines := strings.SplitAfter(out, "\n")
	var b strings.Builder
	done := false
	for _, l := range lines {
		b.WriteString(l)
		if !done && strings.HasPrefix(l, quote) {
			b.WriteString(marker)
			b.WriteByte('\n')
			done = true
		}
	}
	return b.String()
}

// sortDiagnostics orders diagnostics by file and position, so that the
// output is stable (gohcl walks maps) and reads top to bottom. Diagnostics
// without a position come first: they are about the file as a whole.
func sortDiagnostics(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		default:
			return a.Start.Byte < b.Start.Byte
		}
	})
}

// warningLines renders the warnings among diags one per line, for a log.
func warningLines(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		if d.Severity != hcl.DiagWarning {
			continue
		}
		line := d.Summary
		if d.Detail != "" {
			line += ": " + d.Detail
		}
		if d.Subject != nil {
			line = fmt.Sprintf("%s:%d,%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, line)
		}
		out = append(out, line)
	}
	return out
}
