-- update: the public write POST /v1/sites/{site_key}/consents for a returning visitor, drawn at
-- random from the known ones, who saves the preference centre again: 3 choices (random), an
-- Idempotency-Key per request (as the SDK sends). Every answer is 201 (a choice made in the
-- banner is recorded even when unchanged).
-- wrk ... -s update.lua URL -- <site_key> <revision_date> <ids_file (one uuid a line)> <run_nonce: 8 hex digits>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")
workload = "update"

local counter = 0
local path, revision, ids, nonce
local headers = { ["Content-Type"] = "application/json", ["Origin"] = "https://bench.example" }

function init(args)
  path = "/v1/sites/" .. args[1] .. "/consents"
  revision = args[2]
  ids = read_lines(args[3])
  nonce = args[4]
  seed_random()
end

function request()
  counter = counter + 1
  local visitor = ids[math.random(#ids)]
  local b = math.random(0, 7)
  local body = string.format(
    '{"visitor_id":"%s","choices":{"statistics":%s,"marketing":%s,"social_media":%s},' ..
    '"policy_revision":"%s","source":"preference_centre"}',
    visitor, tostring(b % 2 == 1), tostring(b % 4 >= 2), tostring(b >= 4), revision)
  headers["Idempotency-Key"] = string.format("%s-%04x-%012x", nonce, thread_id, counter)
  return wrk.format("POST", path, headers, body)
end
