-- Argo CD health for modelsync.dev/ModelSync, from the conditions the controller writes
-- (README, "The ModelSync resource"). Argo CD sets the global `obj` to the resource and reads
-- the returned table's `status` and `message`.
--
-- A script installed through argocd-cm gets Lua's base, table and package libraries and a
-- reduced `os`, but no `string` or `math`: this one uses base and table only.

-- `t[key]`, or nil when `t` is missing or not a table: a resource the controller has not seen
-- yet has no status, and any part of a status may be absent.
local function field(t, key)
  if type(t) ~= "table" then
    return nil
  end
  return t[key]
end

local function non_empty(text)
  return type(text) == "string" and text ~= ""
end

-- The status condition of type `kind`, or nil.
local function condition(status, kind)
  local conditions = field(status, "conditions")
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if field(c, "type") == kind then
      return c
    end
  end
  return nil
end

-- "Reason: message" of a condition, or whichever of the two it has, or `fallback` for neither.
local function describe(c, fallback)
  local reason, message = field(c, "reason"), field(c, "message")
  if non_empty(reason) and non_empty(message) then
    return reason .. ": " .. message
  elseif non_empty(reason) then
    return reason
  elseif non_empty(message) then
    return message
  end
  return fallback
end

-- The name of the active PipelineRun, or nil when none is active.
local function active_run(status)
  local active = field(status, "active")
  if type(active) ~= "table" or #active == 0 then
    return nil
  end
  local name = field(active[1], "name")
  if non_empty(name) then
    return name
  end
  return "(unnamed)"
end

local function health(state, message)
  return { status = state, message = message }
end

local spec, status = field(obj, "spec"), field(obj, "status")
local run = active_run(status)

-- Suspended wins over everything: it is what the user asked for, and the controller honours it
-- whatever the last status said.
if field(spec, "suspend") == true then
  local message = "spec.suspend is true: the lambda is not asked and no new run starts"
  if run ~= nil then
    message = message .. "; PipelineRun " .. run .. " keeps running"
  end
  return health("Suspended", message)
end

if type(status) ~= "table" then
  return health("Progressing", "waiting for the modelsync controller to report status")
end

-- A status written for an older spec says nothing about the current one (kstatus reads a stale
-- observedGeneration as reconciling): without this, a spec change pushed by Argo CD would look
-- Healthy on the old status before the controller had checked it.
local generation = field(field(obj, "metadata"), "generation")
local observed = field(status, "observedGeneration")
if type(generation) == "number" and type(observed) == "number" and observed < generation then
  return health(
    "Progressing",
    "waiting for the controller to observe generation " .. generation .. " (status is for " .. observed .. ")"
  )
end

local reconciling = condition(status, "Reconciling")
if field(reconciling, "status") == "True" then
  return health("Progressing", describe(reconciling, "Reconciling is True"))
end
if run ~= nil then
  return health("Progressing", "PipelineRun " .. run .. " is running")
end

local ready = condition(status, "Ready")
if ready == nil then
  return health("Progressing", "waiting for the controller to report the Ready condition")
end
if field(ready, "status") == "True" then
  return health("Healthy", describe(ready, "Ready is True"))
end
return health("Degraded", describe(ready, "Ready is " .. tostring(field(ready, "status"))))
