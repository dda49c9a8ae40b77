-- wrk script for `make bench-proxy` (benchmarks/bench_proxy.py): forward-proxy requests with
-- absolute URIs (`GET http://host/path HTTP/1.1`), so wrk talks to the proxy as a browser does.
--
-- Arguments (after `--`): HOSTS_FILE BLOCKED_FILE BLOCKED_EVERY PATH_KIND
--   HOSTS_FILE     allowed host names, one a line; requests walk through them in turn
--   BLOCKED_FILE   host names in a blocked category; every BLOCKED_EVERY-th request goes to one
--   BLOCKED_EVERY  0 for none (10 gives the 10 % blocked mix)
--   PATH_KIND      "small" (/a/N: 1 KB, application/octet-stream), "html" (/page/N.html: 50 KB)
--                  or "unique" (/unique/N.html: the same 50 KB with the request's id in it)
-- The requests are built once in init(), so each request costs wrk a table lookup.
-- With BENCH_COUNT_STATUS=1 in the environment, responses are counted by status (wrk then
-- hands every response to Lua, which costs it some CPU; only the blocked mix needs it).

local requests = {}
local counter = 0
local threads = {}

local function lines(path)
  local out = {}
  for line in io.lines(path) do
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("id", #threads)
end

function init(args)
  local hosts = lines(args[1])
  local blocked = args[2] ~= "-" and lines(args[2]) or {}
  local every = tonumber(args[3])
  local kind = args[4]
  -- Enough distinct requests that every host and blocked name is used; the table is walked in
  -- order, so the blocked share is exact over each pass.
  local n = math.max(#hosts, 1000)
  if every > 0 then n = math.max(n, #blocked * every) end
  local a, b = 0, 0
  for i = 1, n do
    local host, path
    if every > 0 and i % every == 0 then
      b = b + 1
      host = blocked[(b - 1) % #blocked + 1]
      path = "/a/" .. i
    else
      a = a + 1
      host = hosts[(a - 1) % #hosts + 1]
      if kind == "html" then
        path = "/page/" .. i .. ".html"
      elseif kind == "unique" then
        path = "/unique/" .. i .. ".html"
      else
        path = "/a/" .. i .. "?v=" .. (i % 97)
      end
    end
    requests[i] = wrk.format("GET", "http://" .. host .. path,
                             {Host = host, ["User-Agent"] = "wrk-bench", Accept = "*/*"})
  end
  -- Threads start at different places in the table.
  counter = (tonumber(id) or 1) * 7919 % n
  status_2xx, status_3xx, status_403, status_other = 0, 0, 0, 0
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

if os.getenv("BENCH_COUNT_STATUS") == "1" then
  function response(status, headers, body)
    if status >= 200 and status < 300 then status_2xx = status_2xx + 1
    elseif status >= 300 and status < 400 then status_3xx = status_3xx + 1
    elseif status == 403 then status_403 = status_403 + 1
    else status_other = status_other + 1 end
  end
end

function done(summary, latency, _)
  local s = {0, 0, 0, 0}
  for _, t in ipairs(threads) do
    s[1] = s[1] + (t:get("status_2xx") or 0)
    s[2] = s[2] + (t:get("status_3xx") or 0)
    s[3] = s[3] + (t:get("status_403") or 0)
    s[4] = s[4] + (t:get("status_other") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH-JSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"errors\": {\"connect\": %d, \"read\": %d, \"write\": %d, \"status\": %d, " ..
    "\"timeout\": %d}, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"status_2xx\": %d, " ..
    "\"status_3xx\": %d, \"status_403\": %d, \"status_other\": %d, \"counted\": %s}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    s[1], s[2], s[3], s[4], os.getenv("BENCH_COUNT_STATUS") == "1" and "true" or "false"))
end
