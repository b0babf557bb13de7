-- Requests tiles at zoom 15 over the demo district, a different one each time.
counter = 0
request = function()
  counter = counter + 1
  local x = 26656 + (counter * 7) % 24
  local y = 13694 + (counter * 13 + math.floor(counter / 24)) % 24
  return wrk.format("GET", "/tiles/all/15/" .. x .. "/" .. y .. ".mvt", {["Accept-Encoding"] = "gzip"})
end
