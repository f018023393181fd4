-- check: POST /v1/consents/check for one subject, drawn from known visitors.
-- wrk ... -s check.lua URL -- <ids_file (one uuid a line)> <bearer token>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")
workload = "check"

local ids, headers

function init(args)
  ids = read_lines(args[1])
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2] }
  seed_random()
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format("POST", "/v1/consents/check", headers,
    '{"purpose":"statistics","subjects":["visitor:' .. id .. '"]}')
end
