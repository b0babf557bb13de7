-- Area counts: one street's cameras, risks and events by category
-- ($GRID), with $TOKEN as a Bearer header when set.
local token = os.getenv("TOKEN")
local grid = os.getenv("GRID") or "990101001"
local body = '{"area":{"grid":"' .. grid .. '"},"layers":["cameras","risks","events"],"group_by":{"risks":"category","events":"category"},"limit":0}'
request = function()
  local h = {["Content-Type"] = "application/json"}
  if token and token ~= "" then h["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", "/api/query", h, body)
end
