-- bulk: POST /v1/consents/check with a fixed body of 10,000 subjects (run it at -t1 -c1).
-- wrk ... -s bulk.lua URL -- <body_file> <bearer token>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")
workload = "bulk"

local req

function init(args)
  req = wrk.format("POST", "/v1/consents/check",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2] }, read_file(args[1]))
end

function request()
  return req
end
