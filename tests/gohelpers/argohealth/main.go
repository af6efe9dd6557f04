// Command argohealth runs an Argo CD health check (a health.lua) the way Argo CD runs one given in
// argocd-cm (resource.customizations.health.<group>_<kind>): in gopher-lua, with the standard
// libraries skipped and only package, base and table opened, the object as the global `obj`, a
// one-second deadline, and the returned table's status checked against Argo CD's health codes.
// Argo CD also opens a reduced os library (time, date); the scripts here use none of it, so it is
// left out, which makes this stricter, not looser.
//
// Usage: argohealth health.lua < objects.json
// Objects are JSON on stdin: one object, a List, or several one after another. One JSON line per
// object is written to stdout: {"status", "message"}. A script error exits 1.
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

func main() {
	if len(os.Args) != 2 {
		fail(errors.New("usage: argohealth health.lua < objects.json"))
	}
	script, err := os.ReadFile(os.Args[1])
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
			h, err := run(string(script), o)
			if err != nil {
				fail(err)
			}
			if err := out.Encode(h); err != nil {
				fail(err)
			}
		}
	}
}

func run(script string, obj interface{}) (health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return health{}, err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("expected a table from the script, got %s", l.Get(-1).Type())
	}
	h := health{Status: lua.LVAsString(table.RawGetString("status")), Message: lua.LVAsString(table.RawGetString("message"))}
	if !healthCodes[h.Status] {
		h = health{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return h, nil
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
