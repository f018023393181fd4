-- c15t_write: POST /subjects, the call c15t's browser runtime (c15t saveConsents ->
-- manager.setConsent) makes when a visitor saves the banner: a NEW subject every request
-- (client-generated id sub_<base58>), three cookie categories chosen at random (measurement,
-- marketing, experience) plus "necessary": true, which c15t's frontend always sends.
-- wrk ... -s c15t_write.lua URL -- <run_nonce: 8 base58 characters>
-- Consentry's own shared part (bench/wrk/common.lua): the same RESULT line and error counting.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "../../wrk/common.lua")
workload = "write"

-- Base58 (Bitcoin alphabet, the one c15t's subject ids use), fixed width.
local B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
function b58(n, width)
  local s = ""
  for _ = 1, width do
    local d = n % 58
    s = B58:sub(d + 1, d + 1) .. s
    n = (n - d) / 58
  end
  return s
end

local counter = 0
local nonce
local headers = { ["Content-Type"] = "application/json", ["Origin"] = "https://bench.example" }

function init(args)
  nonce = args[1]
  assert(nonce and nonce:match("^[1-9A-HJ-NP-Za-km-z]+$"), "run nonce: base58 characters")
  seed_random()
end

function request()
  counter = counter + 1
  -- Unique across threads (thread id) and runs (nonce): sub_<nonce><thread:2><random:4><counter:8>.
  local subject = "sub_" .. nonce .. b58(thread_id, 2) .. b58(math.random(0, 58 ^ 4 - 1), 4) .. b58(counter, 8)
  local b = math.random(0, 7)
  local body = string.format(
    '{"type":"cookie_banner","domain":"bench.example","preferences":{"necessary":true,' ..
    '"measurement":%s,"marketing":%s,"experience":%s},"subjectId":"%s","jurisdiction":"GDPR",' ..
    '"jurisdictionModel":"opt-in","givenAt":%d,"uiSource":"banner","consentAction":"custom"}',
    tostring(b % 2 == 1), tostring(b % 4 >= 2), tostring(b >= 4), subject,
    os.time() * 1000 + math.random(0, 999))
  return wrk.format("POST", "/subjects", headers, body)
end
