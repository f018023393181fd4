-- c15t_check: GET /subjects/{id}?type=cookie_banner for ONE known subject, drawn at random
-- from the subjects seeded before (c15t's per-subject "what has this subject consented to"
-- call; the answer lists the subject's cookie_banner consents with their granted purposes,
-- e.g. preferences.measurement, and isValid).
-- wrk ... -s c15t_check.lua URL -- <ids_file (one sub_... id a line)> [path_prefix, default /subjects/]
-- Consentry's own shared part (bench/wrk/common.lua): the same RESULT line and error counting.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "../../wrk/common.lua")
workload = "check"

local ids, prefix
local headers = { ["Origin"] = "https://bench.example" }

function init(args)
  ids = read_lines(args[1])
  prefix = args[2] or "/subjects/"
  seed_random()
end

function request()
  return wrk.format("GET", prefix .. ids[math.random(#ids)] .. "?type=cookie_banner", headers)
end
