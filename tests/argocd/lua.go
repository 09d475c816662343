package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Health is what a health script answers, in Argo CD's terms.
type Health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func (h Health) String() string {
	return fmt.Sprintf("%s %q", h.Status, h.Message)
}

// The statuses Argo CD takes from a script; it shows any other as Unknown.
var knownStatuses = []string{"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

// Argo CD gives a script one second.
const scriptTimeout = time.Second

// The libraries Argo CD opens for a script installed through argocd-cm. It also offers a
// reduced `os` (time and date); our scripts use none of it, and leaving it out keeps this
// runner the stricter of the two.
var openLibraries = []struct {
	name string
	open lua.LGFunction
}{
	{lua.LoadLibName, lua.OpenPackage},
	{lua.BaseLibName, lua.OpenBase},
	{lua.TabLibName, lua.OpenTable},
}

// evaluate runs script as Argo CD does: a fresh interpreter with only openLibraries, the
// global `obj` set to the resource, and the table the script returns read as its health.
func evaluate(script string, resource map[string]any) (Health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range openLibraries {
		err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), Protect: true}, lua.LString(lib.name))
		if err != nil {
			return Health{}, fmt.Errorf("opening the Lua library %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, resource))
	if err := L.DoString(script); err != nil {
		if ctx.Err() != nil {
			return Health{}, fmt.Errorf("the script ran past %s, when Argo CD stops it", scriptTimeout)
		}
		return Health{}, fmt.Errorf("the script failed (through argocd-cm it gets only Lua's base, table and package libraries): %w", err)
	}
	// Argo CD reads the value left on top of the stack: the script's last return value.
	return readHealth(L.Get(-1))
}

// readHealth checks the returned value the way Argo CD decodes it: a table whose `status` is
// a known health status and whose `message`, if any, is a string.
func readHealth(v lua.LValue) (Health, error) {
	table, ok := v.(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("the script returned a %s; return a table {status = ..., message = ...}", v.Type())
	}
	var h Health
	status, ok := table.RawGetString("status").(lua.LString)
	if !ok {
		return Health{}, fmt.Errorf("the returned status is a %s, not a string", table.RawGetString("status").Type())
	}
	h.Status = string(status)
	if !known(h.Status) {
		return Health{}, fmt.Errorf("the returned status %q is none of %s; Argo CD would show Unknown",
			h.Status, strings.Join(knownStatuses, ", "))
	}
	switch message := table.RawGetString("message").(type) {
	case lua.LString:
		h.Message = string(message)
	default:
		if message.Type() != lua.LTNil {
			return Health{}, fmt.Errorf("the returned message is a %s, not a string", message.Type())
		}
	}
	return h, nil
}

func known(status string) bool {
	for _, s := range knownStatuses {
		if s == status {
			return true
		}
	}
	return false
}

// toLua turns a resource decoded from JSON into Lua values: objects into tables keyed by
// field name, arrays into sequences (from 1), numbers into Lua numbers.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		seq := L.CreateTable(len(v), 0)
		for _, item := range v {
			seq.Append(toLua(L, item))
		}
		return seq
	case map[string]any:
		table := L.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(L, item))
		}
		return table
	}
	// encoding/json produces only the types above.
	panic(fmt.Sprintf("toLua: unexpected %T", v))
}
