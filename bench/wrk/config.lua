-- config: GET /v1/sites/{site_key}/config?region=US-CA, the banner's first call (no Origin:
-- a server-side caller; the answer is the same).
-- wrk ... -s config.lua URL -- <site_key>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")
workload = "config"

local req

function init(args)
  req = wrk.format("GET", "/v1/sites/" .. args[1] .. "/config?region=US-CA", { ["Origin"] = "https://bench.example" })
end

function request()
  return req
end
