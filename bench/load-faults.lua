-- wrk script for bench/load-faults: /auth/nginx with a mix of valid,
-- expired, deleted, tampered and missing session cookies.
--
-- Run with as many threads as connections (-t64 -c64): each thread then has
-- one connection, so every response belongs to the thread's last request.
-- Cookies come from $LOAD_DIR/{valid,expired,deleted,tampered}.txt; each
-- thread writes one line per response to $LOAD_DIR/load/thread-N.log:
--   <sent ms> <received ms> <kind> <status>
-- (milliseconds since the epoch), for the script to count.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } bench_timeval;
  int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end

local dir = os.getenv("LOAD_DIR")
local url = os.getenv("ORIGINAL_URL")

local function lines(name)
  local out = {}
  for l in io.lines(dir .. "/" .. name) do
    if #l > 0 then out[#out + 1] = l end
  end
  assert(#out > 0, name .. " is empty")
  return out
end

-- Half the requests carry a valid session; the other half is split evenly
-- between the four ways of not being signed in.
local kinds = { "valid", "valid", "valid", "valid", "expired", "deleted", "tampered", "missing" }

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local cookies, log, sent, kind
function init(args)
  cookies = {
    valid = lines("valid.txt"),
    expired = lines("expired.txt"),
    deleted = lines("deleted.txt"),
    tampered = lines("tampered.txt"),
  }
  log = assert(io.open(dir .. "/load/thread-" .. id .. ".log", "w"))
  math.randomseed(id * 7919 + now_ms() % 100000)
end

function request()
  kind = kinds[math.random(#kinds)]
  local headers = { ["X-Original-URL"] = url }
  if kind ~= "missing" then
    local list = cookies[kind]
    headers["Cookie"] = "_portcullis=" .. list[math.random(#list)]
  end
  sent = now_ms()
  return wrk.format("GET", "/auth/nginx", headers)
end

function response(status, headers, body)
  log:write(sent, " ", now_ms(), " ", kind, " ", status, "\n")
end

function done(summary, latency, requests)
  -- The per-thread logs are flushed when wrk exits; the shell script
  -- counts them.
end
