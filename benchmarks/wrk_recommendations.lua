-- wrk script of benchmarks/bench_api.py: GET the request paths of a file in turn, count fallbacks.
-- Usage: wrk -t T -c C -d Ds -s wrk_recommendations.lua http://host:port -- PATHS_FILE
-- Each thread starts at its own offset of the file; done() prints one line "WRK_JSON {...}".
local threads = {}
local paths, n, at = {}, 0, 0
fallbacks, non200 = 0, 0 -- globals: done() reads them from every thread
workers = {} -- responses per x-funnel-worker header (the server process that answered)

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    paths[n] = line
  end
  at = (id * 7919) % n -- spread the threads over the file
end

function request()
  at = at % n + 1
  return wrk.format("GET", paths[at])
end

function response(status, headers, body)
  local w = headers["x-funnel-worker"] or "?"
  workers[w] = (workers[w] or 0) + 1
  if status ~= 200 then
    non200 = non200 + 1
  elseif not string.find(body, '"fallback":null', 1, true) then
    fallbacks = fallbacks + 1
  end
end

function done(summary, latency, requests)
  local f, e, by = 0, 0, {}
  for _, t in ipairs(threads) do
    f = f + t:get("fallbacks")
    e = e + t:get("non200")
    for w, n in pairs(t:get("workers")) do
      by[w] = (by[w] or 0) + n
    end
  end
  local parts = {}
  for w, n in pairs(by) do
    table.insert(parts, string.format('"%s": %d', w, n))
  end
  local err = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"fallbacks": %d, "non200": %d, "by_worker": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, err.connect, err.read, err.write, err.timeout, f, e,
    table.concat(parts, ", ")))
end
