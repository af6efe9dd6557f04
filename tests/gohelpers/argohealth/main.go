// Command argohealth runs an Argo CD health check (a health.lua) or resource action (discovery.lua,
// action.lua) the way Argo CD runs one given in argocd-cm (resource.customizations.health.<group>_<kind>,
// resource.customizations.actions.<group>_<kind>): in gopher-lua, with the standard libraries skipped
// and only package, base and table opened, the object as the global `obj`, a one-second deadline.
// Argo CD also opens a reduced os library (time, date); the scripts here use none of it, so it is
// left out, which makes this stricter, not looser.
//
// Usage:
//
//	argohealth health.lua < objects.json              {"status", "message"}, checked against Argo CD's codes
//	argohealth discovery discovery.lua < objects.json {"<action>": {"disabled", "displayName", ...}}
//	argohealth action action.lua < objects.json       the object the action returns, or {"error": message}
//
// Objects are JSON on stdin: one object, a List, or several one after another. One JSON line per
// object is written to stdout. A health or discovery script error exits 1; an action's error() is
// its answer (Argo CD shows it to the user and patches nothing).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// The codes Argo CD accepts from a health script; anything else becomes Unknown.
var healthCodes = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

const usage = "usage: argohealth [discovery|action] script.lua < objects.json"

func main() {
	mode, path := "health", ""
	switch {
	case len(os.Args) == 2:
		path = os.Args[1]
	case len(os.Args) == 3 && (os.Args[1] == "discovery" || os.Args[1] == "action"):
		mode, path = os.Args[1], os.Args[2]
	default:
		fail(errors.New(usage))
	}
	script, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	out := json.NewEncoder(os.Stdout)
	dec := json.NewDecoder(os.Stdin)
	dec.UseNumber()
	for {
		var obj map[string]interface{}
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			fail(err)
		}
		objects := []interface{}{obj}
		if items, ok := obj["items"].([]interface{}); ok && obj["kind"] == "List" {
			objects = items
		}
		for _, o := range objects {
			result, err := run(mode, string(script), o)
			if err != nil {
				fail(err)
			}
			if err := out.Encode(result); err != nil {
				fail(err)
			}
		}
	}
}

func run(mode, script string, obj interface{}) (interface{}, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		if apiErr, ok := err.(*lua.ApiError); ok && mode == "action" && apiErr.Type == lua.ApiErrorRun {
			return map[string]string{"error": lua.LVAsString(apiErr.Object)}, nil
		}
		return nil, err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("expected a table from the script, got %s", l.Get(-1).Type())
	}
	if mode != "health" {
		return fromLua(table), nil
	}
	h := health{Status: lua.LVAsString(table.RawGetString("status")), Message: lua.LVAsString(table.RawGetString("message"))}
	if !healthCodes[h.Status] {
		h = health{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return h, nil
}

// fromLua converts a returned Lua value to JSON as Argo CD does for an action's object: a table with
// only the keys 1..n is an array, any other table an object (an empty table too: Argo CD turns an
// empty table back into the object it was in the input).
func fromLua(value lua.LValue) interface{} {
	switch v := value.(type) {
	case lua.LBool:
		return bool(v)
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return float64(v)
	case *lua.LTable:
		if n := v.MaxN(); n > 0 && n == countKeys(v) {
			items := make([]interface{}, 0, n)
			for i := 1; i <= n; i++ {
				items = append(items, fromLua(v.RawGetInt(i)))
			}
			return items
		}
		fields := map[string]interface{}{}
		v.ForEach(func(key, item lua.LValue) { fields[lua.LVAsString(key)] = fromLua(item) })
		return fields
	}
	return nil
}

func countKeys(t *lua.LTable) int {
	n := 0
	t.ForEach(func(lua.LValue, lua.LValue) { n++ })
	return n
}

// toLua converts decoded JSON to Lua values as Argo CD does for an unstructured object (numbers are
// Lua numbers, objects and arrays are tables).
func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			fail(err)
		}
		return lua.LNumber(f)
	case []interface{}:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]interface{}:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "argohealth:", err)
	os.Exit(1)
}
