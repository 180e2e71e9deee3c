package config

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// evalContext is what expressions in the file may use: no variables, and the
// single function env(). It is built per load, so it reads the environment
// as it is at that load (a reload sees a changed environment of the master).
func evalContext() *hcl.EvalContext {
	return &hcl.EvalContext{
		Functions: map[string]function.Function{"env": envFunc(os.LookupEnv)},
	}
}

// envFunc is env(NAME) or env(NAME, FALLBACK): the value of an environment
// variable. An unset variable without a fallback is an error naming it rather
// than an empty string, so that a forgotten export fails the load instead of
// starting a proxy with, say, an empty upstream address. A variable that is
// set but empty is returned as "" (it was set on purpose).
func envFunc(lookup func(string) (string, bool)) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the value of an environment variable, or the fallback when it is unset.",
		Params: []function.Parameter{
			{Name: "name", Type: cty.String},
		},
		VarParam: &function.Parameter{Name: "fallback", Type: cty.String},
		Type: func(args []cty.Value) (cty.Type, error) {
			if len(args) > 2 {
				return cty.NilType, function.NewArgErrorf(2,
					"env takes a variable name and at most one fallback, not %d arguments", len(args))
			}
			return cty.String, nil
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			if name == "" {
				return cty.NilVal, function.NewArgErrorf(0, "the environment variable name is empty")
			}
			if v, ok := lookup(name); ok {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, function.NewArgError(0, fmt.Errorf(
				"environment variable %q is not set; set it, or give a fallback: env(%q, \"default\")", name, name))
		},
	})
}
