package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// builder turns the raw file into a Config and collects every problem on
// the way as diagnostics: a bad value is reported and replaced by its default
// so that the checks after it still run and the user sees every problem in
// one go.
type builder struct {
	baseDir   string    // relative paths resolve against this
	fileRange hcl.Range // where problems of the file as a whole point
	diags     hcl.Diagnostics

	// unmatchable marks routes whose host or path_prefix is bad: they are
	// left out of the duplicate-route check, which would otherwise compare
	// the defaults put in their place.
	unmatchable map[*rawRoute]bool

	// pidFile is pid_file's default (defaultPIDFile but for the embedded
	// default run by a user other than root).
	pidFile string
}

func (b *builder) errorf(rng hcl.Range, summary, format string, args ...any) {
	b.addDiag(hcl.DiagError, rng, summary, fmt.Sprintf(format, args...))
}

func (b *builder) warnf(rng hcl.Range, summary, format string, args ...any) {
	b.addDiag(hcl.DiagWarning, rng, summary, fmt.Sprintf(format, args...))
}

func (b *builder) addDiag(sev hcl.DiagnosticSeverity, rng hcl.Range, summary, detail string) {
	b.diags = append(b.diags, &hcl.Diagnostic{Severity: sev, Summary: summary, Detail: detail, Subject: rng.Ptr()})
}

// attribute returns the attribute name as written in body, or nil. Bodies
// come from hclparse.ParseHCL, so they are native syntax; anything else
// (never, today) just has no attribute positions.
func attribute(body hcl.Body, name string) *hclsyntax.Attribute {
	sb, ok := body.(*hclsyntax.Body)
	if !ok || sb == nil {
		return nil
	}
	return sb.Attributes[name]
}

// valueRange is where the value of attribute name is written in body: the
// place a diagnostic about that value points at. An absent attribute points
// at the start of the block.
func valueRange(body hcl.Body, name string) hcl.Range {
	if a := attribute(body, name); a != nil {
		return a.Expr.Range()
	}
	if body == nil {
		return hcl.Range{}
	}
	return body.MissingItemRange()
}

// elemRange is where element i of a list attribute is written, or the whole
// value when the list is not written out literally (env() for instance).
func elemRange(body hcl.Body, name string, i int) hcl.Range {
	if a := attribute(body, name); a != nil {
		if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
			return t.Exprs[i].Range()
		}
	}
	return valueRange(body, name)
}

// keyRange is where key k of a map attribute is written, or the whole value.
func keyRange(body hcl.Body, name, k string) hcl.Range {
	if a := attribute(body, name); a != nil {
		if o, ok := a.Expr.(*hclsyntax.ObjectConsExpr); ok {
			for _, item := range o.Items {
				v, diags := item.KeyExpr.Value(nil)
				if !diags.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type().Equals(cty.String) && v.AsString() == k {
					return item.KeyExpr.Range()
				}
			}
		}
	}
	return valueRange(body, name)
}

// decoded reports whether attribute name is present in body and decoded
// without error. Checks of required attributes skip those that are missing
// or undecodable: gohcl has already said so, and a second message about the
// zero value left behind would only confuse.
func (b *builder) decoded(body hcl.Body, name string) bool {
	a := attribute(body, name)
	if a == nil {
		return false
	}
	for _, d := range b.diags {
		if d.Severity == hcl.DiagError && d.Subject != nil && d.Subject.Overlaps(a.SrcRange) {
			return false
		}
	}
	return true
}

// forgetFailed walks the decoded raw structs and resets every attribute
// whose expression failed (an unset env(), a wrong type) to its zero value,
// as if it were absent. The failure is already reported; without this, the
// checks would also complain of the meaningless value gohcl leaves behind.
// Checks of required attributes still see them as present (present()), so
// no "missing" complaint follows either.
func (b *builder) forgetFailed(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			b.forgetFailed(v.Elem())
		}
		return
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Pointer {
			for i := 0; i < v.Len(); i++ {
				b.forgetFailed(v.Index(i))
			}
		}
		return
	case reflect.Struct:
	default:
		return
	}
	var body hcl.Body
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("hcl") == ",body" {
			body, _ = v.Field(i).Interface().(hcl.Body)
		}
	}
	for i := 0; i < v.NumField(); i++ {
		name, kind, _ := strings.Cut(v.Type().Field(i).Tag.Get("hcl"), ",")
		switch kind {
		case "", "optional":
			if name != "" && present(body, name) && !b.decoded(body, name) {
				v.Field(i).Set(reflect.Zero(v.Field(i).Type()))
			}
		case "block":
			b.forgetFailed(v.Field(i))
		}
	}
}

// failed reports whether attribute name is written in body but could not be
// decoded (its error is already reported).
func (b *builder) failed(body hcl.Body, name string) bool {
	return present(body, name) && !b.decoded(body, name)
}

// present reports whether attribute name is written in body at all, decoded
// or not.
func present(body hcl.Body, name string) bool {
	return attribute(body, name) != nil
}
