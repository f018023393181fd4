-- Shared by the workload scripts (loaded with dofile from each of them): thread ids, counting
-- of non-2xx answers, reading a file, and the one machine-readable RESULT line printed by done().
--
-- wrk runs setup() and done() in the main Lua state and init()/request()/response() in one state
-- per thread; per-thread counters are globals of the thread's state, read back with thread:get().

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

non2xx = 0
first_error = nil

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_error == nil then
      first_error = tostring(status) .. " " .. string.sub(body or "", 1, 300):gsub("%s+", " ")
    end
  end
end

function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local data = f:read("*a")
  f:close()
  return data
end

function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then lines[#lines + 1] = line end
  end
  assert(#lines > 0, "no lines in " .. path)
  return lines
end

-- Seeds math.random differently in every thread and every run.
function seed_random()
  local t = tonumber(tostring(os.time()):sub(-6)) or 0
  math.randomseed(t * 131 + (thread_id or 0) * 7919 + math.floor(os.clock() * 1e6))
  for _ = 1, 10 do math.random() end
end

function done(summary, latency, requests)
  local bad, first = 0, nil
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
    first = first or t:get("first_error")
  end
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT workload=%s rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx=%d socket_errors=%d " ..
    "connect=%d read=%d write=%d timeout=%d\n",
    workload or "?", summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, bad, socket, e.connect, e.read, e.write, e.timeout))
  if first then io.write("FIRST_ERROR " .. first .. "\n") end
end
