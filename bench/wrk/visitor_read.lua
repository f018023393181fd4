-- visitor_read: GET /v1/sites/{site_key}/visitors/{id}/consents, as the SDK asks it.
-- wrk ... -s visitor_read.lua URL -- <site_key> <ids_file>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")
workload = "visitor_read"

local ids, prefix
local headers = { ["Origin"] = "https://bench.example" }

function init(args)
  prefix = "/v1/sites/" .. args[1] .. "/visitors/"
  ids = read_lines(args[2])
  seed_random()
end

function request()
  return wrk.format("GET", prefix .. ids[math.random(#ids)] .. "/consents", headers)
end
