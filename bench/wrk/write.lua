-- write: the public write POST /v1/sites/{site_key}/consents, a new visitor every request, with an
-- Idempotency-Key as the SDK sends it (one per write).
-- wrk ... -s write.lua URL -- <site_key> <revision_date> <run_nonce: 8 hex digits>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")
workload = "write"

local counter = 0
local path, nonce, revision
local headers = { ["Content-Type"] = "application/json", ["Origin"] = "https://bench.example" }

function init(args)
  path = "/v1/sites/" .. args[1] .. "/consents"
  revision = args[2]
  nonce = args[3]
  seed_random()
end

function request()
  counter = counter + 1
  -- Unique across threads (thread id) and runs (nonce): <nonce>-<thread>-4xxx-8xxx-<counter>.
  local visitor = string.format("%s-%04x-4%03x-8%03x-%012x", nonce, thread_id, math.random(0, 4095),
    math.random(0, 4095), counter)
  local b = math.random(0, 7)
  local body = string.format(
    '{"visitor_id":"%s","choices":{"statistics":%s,"marketing":%s,"social_media":%s},' ..
    '"policy_revision":"%s","source":"banner"}',
    visitor, tostring(b % 2 == 1), tostring(b % 4 >= 2), tostring(b >= 4), revision)
  headers["Idempotency-Key"] = visitor
  return wrk.format("POST", path, headers, body)
end
