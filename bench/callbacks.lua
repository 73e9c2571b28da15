-- wrk script for bench/load.sh: POSTs pre-encrypted callbacks, one line of the
-- request file each (PATH?QUERY<TAB>BODY). Thread k sends lines k, k+T, k+2T,
-- ... so every request is a distinct event until a thread runs out (it then
-- starts over and counts the wrap: those repeats are duplicates, not new events).
-- Arguments after `--`: FILE THREADS.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  local headers = { ["Content-Type"] = "text/xml" }
  reqs = {}
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      local path, body = line:match("^([^\t]+)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", path, headers, body)
    end
    i = i + 1
  end
  n = 0
  wrapped = 0
end

function request()
  n = n + 1
  if n > #reqs then
    n = 1
    wrapped = wrapped + 1
  end
  return reqs[n]
end

function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do
    wraps = wraps + (thread:get("wrapped") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    "WRK requests=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f non2xx=%d socket_errors=%d wrapped=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    errors.status, errors.connect + errors.read + errors.write + errors.timeout, wraps))
end
